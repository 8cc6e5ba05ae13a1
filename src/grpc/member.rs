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

    async fn unlink_identifier(
        &self,
        request: Request<proto::UnlinkIdentifierRequest>,
    ) -> Result<Response<proto::UnlinkIdentifierResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::UnlinkIdentifier).await?;
        let request = request.into_inner();
        let command = unlink_command(&request)?;
        let member = execute(&self.engine, &caller, Some(&request.request_id), command).await?;
        Ok(Response::new(proto::UnlinkIdentifierResponse {
            member: Some(member_out(member)),
        }))
    }

    async fn erase_member(
        &self,
        request: Request<proto::EraseMemberRequest>,
    ) -> Result<Response<proto::EraseMemberResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::EraseMember).await?;
        let request = request.into_inner();
        let command = erase_command(&request)?;
        let member = execute(&self.engine, &caller, Some(&request.request_id), command).await?;
        Ok(Response::new(proto::EraseMemberResponse {
            member: Some(member_out(member)),
        }))
    }
}

/// Most attributes a member may have, and their longest key and value, in characters.
const MAX_ATTRIBUTES: usize = 32;
const MAX_ATTRIBUTE_KEY_CHARS: usize = 64;
const MAX_ATTRIBUTE_VALUE_CHARS: usize = 256;

pub(super) fn update_command(
    request: &proto::UpdateMemberRequest,
) -> Result<MemberCommand, Status> {
    let mut v = Violations::new();
    check_request_id(&mut v, &request.request_id);
    let member = member_ref(&mut v, "member", request.member.clone());
    let paths = request
        .update_mask
        .as_ref()
        .map(|mask| mask.paths.clone())
        .unwrap_or_default();
    if paths.is_empty() {
        v.push(
            "update_mask",
            "names the fields to change: display_name, attributes",
        );
    }
    let (mut display_name, mut attributes) = (None, None);
    for path in &paths {
        match path.as_str() {
            "display_name" => {
                let name = &request.display_name;
                if check_text(&mut v, "display_name", name, 0, MAX_DISPLAY_NAME_CHARS) {
                    display_name = Some(name.clone());
                }
            }
            "attributes" => attributes = attributes_in(&mut v, &request.attributes),
            _ => v.push(
                "update_mask",
                format!("cannot change {path:?}; changeable: display_name, attributes"),
            ),
        }
    }
    v.build(|| {
        Some(MemberCommand::UpdateMember {
            member: member?,
            display_name,
            attributes,
        })
    })
}

fn attributes_in(
    v: &mut Violations,
    attributes: &std::collections::HashMap<String, String>,
) -> Option<std::collections::BTreeMap<String, String>> {
    if attributes.len() > MAX_ATTRIBUTES {
        v.push("attributes", format!("at most {MAX_ATTRIBUTES} entries"));
        return None;
    }
    let mut ok = true;
    for (key, value) in attributes {
        let field = format!("attributes[{key:.64}]");
        ok &= check_text(v, &field, key, 1, MAX_ATTRIBUTE_KEY_CHARS);
        ok &= check_text(v, &field, value, 0, MAX_ATTRIBUTE_VALUE_CHARS);
    }
    ok.then(|| attributes.clone().into_iter().collect())
}

pub(super) fn unlink_command(
    request: &proto::UnlinkIdentifierRequest,
) -> Result<MemberCommand, Status> {
    let mut v = Violations::new();
    check_request_id(&mut v, &request.request_id);
    let member = member_ref(&mut v, "member", request.member.clone());
    let identifier = identifier(&mut v, "identifier", request.identifier.clone());
    v.build(|| {
        Some(MemberCommand::UnlinkIdentifier {
            member: member?,
            identifier: identifier?,
        })
    })
}

pub(super) fn erase_command(request: &proto::EraseMemberRequest) -> Result<MemberCommand, Status> {
    let mut v = Violations::new();
    check_request_id(&mut v, &request.request_id);
    let member = member_ref(&mut v, "member", request.member.clone());
    v.build(|| Some(MemberCommand::EraseMember { member: member? }))
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
        MemberState::Erased => proto::MemberState::Erased,
    };
    proto::Member {
        member_id: member.member_id,
        identifiers: member.identifiers.into_iter().map(identifier_out).collect(),
        display_name: member.display_name,
        state: state.into(),
        merged_into: member.merged_into.unwrap_or_default(),
        created_at: Some(timestamp(member.created_at)),
        attributes: member.attributes.into_iter().collect(),
        tier: member.tier.map(|tier| proto::MemberTier {
            tier_id: tier.tier_id,
            since: tier.since.map(timestamp),
            spend: tier.spend.to_string(),
            next_tier_id: tier.next_tier_id,
            spend_to_next: tier
                .spend_to_next
                .map(|money| money.to_string())
                .unwrap_or_default(),
            review_at: Some(timestamp(tier.review_at)),
        }),
    }
}
