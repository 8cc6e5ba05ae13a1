//! The program's settings and its stores: admin writes, read by every order through the
//! reference cache (which a change here invalidates on this replica at once).

use chrono::{DateTime, Utc};

use super::{CommandResult, reference::Reference, rows::LedgerRows};
use crate::domain::{
    DomainError,
    auth::{Caller, Operation},
    command::{Reply, SettingsCommand},
};

impl SettingsCommand {
    pub(super) async fn run(
        &self,
        uow: &mut dyn LedgerRows,
        reference: &Reference,
        caller: &Caller,
        _now: DateTime<Utc>,
    ) -> CommandResult<Reply> {
        match self {
            SettingsCommand::CreateStore(store) => {
                caller.require(Operation::ManageStores)?;
                if uow.get_store(&store.store_id).await?.is_some() {
                    return Err(DomainError::StoreExists(store.store_id.clone()).into());
                }
                uow.insert_store(store).await?;
                reference.stores_changed();
                Ok(Reply::Store(store.clone()))
            }
            SettingsCommand::UpdateProgram { patch, replace } => {
                caller.require(Operation::ManageProgram)?;
                // Read, patch and write under the row lock: concurrent partial updates compose.
                let mut program = if *replace {
                    Default::default()
                } else {
                    uow.ensure_program(&Default::default()).await?;
                    uow.load_program(true).await?.unwrap_or_default()
                };
                patch.clone().apply(&mut program);
                uow.save_program(&program).await?;
                reference.program_changed();
                Ok(Reply::Program(program))
            }
        }
    }
}
