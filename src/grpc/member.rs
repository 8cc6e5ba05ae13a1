//! `omo.v1.MemberService`: members and their identifiers.

use std::{collections::HashSet, sync::Arc};

use tonic::{Request, Response, Status};

use super::{
    auth::caller_for,
    convert::{
        Violations, check_id, check_request_id, check_text, identifier, identifier_out, member_ref,
        parse_field, timestamp,
    },
    reply::execute,
};
use crate::{
    domain::{
        auth::Operation,
        command::MemberCommand,
        model::{Member, MemberState},
    },
    engine::Engine,
    proto::{self, member_service_server::MemberService},
};

/// Most identifiers given to CreateMember.
const MAX_IDENTIFIERS: usize = 32;
/// Longest display name, in characters.
const MAX_DISPLAY_NAME_CHARS: usize = 200;

pub struct MemberApi {
    engine: Arc<Engine>,
}

impl MemberApi {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

#[tonic::async_trait]
impl MemberService for MemberApi {
    async fn create_member(
        &self,
        request: Request<proto::CreateMemberRequest>,
    ) -> Result<Response<proto::CreateMemberResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::CreateMember).await?;
        let request = request.into_inner();
        let command = create_member_command(&request)?;
        let member = execute(&self.engine, &caller, Some(&request.request_id), command).await?;
        Ok(Response::new(proto::CreateMemberResponse {
            member: Some(member_out(member)),
        }))
    }

    async fn get_member(
        &self,
        request: Request<proto::GetMemberRequest>,
    ) -> Result<Response<proto::GetMemberResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::GetMember).await?;
        let member = parse_field(|v| member_ref(v, "member", request.into_inner().member))?;
        let member = self.engine.get_member(&caller, &member).await?;
        Ok(Response::new(proto::GetMemberResponse {
            member: Some(member_out(member)),
        }))
    }

    async fn link_identifier(
        &self,
        request: Request<proto::LinkIdentifierRequest>,
    ) -> Result<Response<proto::LinkIdentifierResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::LinkIdentifier).await?;
        let request = request.into_inner();
        let command = link_command(&request)?;
        let member = execute(&self.engine, &caller, Some(&request.request_id), command).await?;
        Ok(Response::new(proto::LinkIdentifierResponse {
            member: Some(member_out(member)),
        }))
    }

    async fn merge_members(
        &self,
        request: Request<proto::MergeMembersRequest>,
    ) -> Result<Response<proto::MergeMembersResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::MergeMembers).await?;
        let request = request.into_inner();
        let command = merge_command(&request)?;
        let member = execute(&self.engine, &caller, Some(&request.request_id), command).await?;
        Ok(Response::new(proto::MergeMembersResponse {
            member: Some(member_out(member)),
        }))
    }

    async fn update_member(
        &self,
        request: Request<proto::UpdateMemberRequest>,
    ) -> Result<Response<proto::UpdateMemberResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::UpdateMember).await?;
        let request = request.into_inner();
        let command = update_command(&request)?;
        let member = execute(&self.engine, &caller, Some(&request.request_id), command).await?;
        Ok(Response::new(proto::UpdateMemberResponse {
            member: Some(member_out(member)),
        }))
    }
}

/// UpdateMember's fields, as `update_mask` paths.
const UPDATE_FIELDS: [&str; 2] = ["display_name", "attributes"];

/// UpdateMember: `member.member_id` names the member; `update_mask` (required: an update that
/// names nothing is a mistake) the fields that change.
pub(super) fn update_command(
    request: &proto::UpdateMemberRequest,
) -> Result<MemberCommand, Status> {
    let mut v = Violations::new();
    check_request_id(&mut v, &request.request_id);
    let Some(member) = &request.member else {
        v.push("member", "is required");
        return Err(v.into_status());
    };
    check_id(&mut v, "member.member_id", &member.member_id);
    let paths = request
        .update_mask
        .as_ref()
        .map(|mask| mask.paths.clone())
        .unwrap_or_default();
    if paths.is_empty() {
        v.push(
            "update_mask",
            format!(
                "is required: name the fields to change ({})",
                UPDATE_FIELDS.join(", ")
            ),
        );
    }
    for path in &paths {
        if !UPDATE_FIELDS.contains(&path.as_str()) {
            v.push(
                "update_mask",
                format!(
                    "unknown field {path:?}; known: {}",
                    UPDATE_FIELDS.join(", ")
                ),
            );
        }
    }
    let selected = |field: &str| paths.iter().any(|p| p == field);
    let display_name = selected("display_name").then(|| member.display_name.clone());
    if let Some(name) = &display_name {
        check_text(
            &mut v,
            "member.display_name",
            name,
            0,
            MAX_DISPLAY_NAME_CHARS,
        );
    }
    let attributes = selected("attributes").then(|| {
        member
            .attributes
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect::<std::collections::BTreeMap<_, _>>()
    });
    if let Some(attributes) = &attributes {
        for violation in crate::domain::attributes::violations("member.attributes", attributes) {
            v.push(violation.field, violation.description);
        }
    }
    v.finish()?;
    Ok(MemberCommand::UpdateMember {
        member_id: member.member_id.clone(),
        display_name,
        attributes,
    })
}

pub(super) fn link_command(
    request: &proto::LinkIdentifierRequest,
) -> Result<MemberCommand, Status> {
    let mut v = Violations::new();
    check_request_id(&mut v, &request.request_id);
    let member = member_ref(&mut v, "member", request.member.clone());
    let identifier = identifier(&mut v, "identifier", request.identifier.clone());
    v.build(|| {
        Some(MemberCommand::LinkIdentifier {
            member: member?,
            identifier: identifier?,
        })
    })
}

pub(super) fn merge_command(request: &proto::MergeMembersRequest) -> Result<MemberCommand, Status> {
    let mut v = Violations::new();
    check_request_id(&mut v, &request.request_id);
    check_id(&mut v, "source_member_id", &request.source_member_id);
    if check_id(&mut v, "target_member_id", &request.target_member_id)
        && request.target_member_id == request.source_member_id
    {
        v.push("target_member_id", "must differ from source_member_id");
    }
    v.finish()?;
    Ok(MemberCommand::MergeMembers {
        source_member_id: request.source_member_id.clone(),
        target_member_id: request.target_member_id.clone(),
    })
}

pub(super) fn create_member_command(
    request: &proto::CreateMemberRequest,
) -> Result<MemberCommand, Status> {
    let mut v = Violations::new();
    check_request_id(&mut v, &request.request_id);
    check_text(
        &mut v,
        "display_name",
        &request.display_name,
        0,
        MAX_DISPLAY_NAME_CHARS,
    );
    if request.identifiers.len() > MAX_IDENTIFIERS {
        v.push(
            "identifiers",
            format!("at most {MAX_IDENTIFIERS} identifiers"),
        );
    }
    let mut seen = HashSet::new();
    let mut identifiers = Some(Vec::with_capacity(request.identifiers.len()));
    for (i, given) in request.identifiers.iter().enumerate() {
        let field = format!("identifiers[{i}]");
        match identifier(&mut v, &field, Some(given.clone())) {
            Some(parsed) if !seen.insert(parsed.clone()) => {
                v.push(field, "duplicate identifier");
                identifiers = None;
            }
            Some(parsed) => {
                if let Some(list) = identifiers.as_mut() {
                    list.push(parsed);
                }
            }
            None => identifiers = None,
        }
    }
    v.build(|| {
        Some(MemberCommand::CreateMember {
            identifiers: identifiers?,
            display_name: request.display_name.clone(),
        })
    })
}

pub fn member_out(member: Member) -> proto::Member {
    let state = match member.state {
        MemberState::Active => proto::MemberState::Active,
        MemberState::Merged => proto::MemberState::Merged,
    };
    proto::Member {
        member_id: member.member_id,
        identifiers: member.identifiers.into_iter().map(identifier_out).collect(),
        display_name: member.display_name,
        state: state.into(),
        merged_into: member.merged_into.unwrap_or_default(),
        created_at: Some(timestamp(member.created_at)),
        attributes: member.attributes.into_iter().collect(),
    }
}
