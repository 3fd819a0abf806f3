//! What the `api-keys` and `devices` commands print, in either mode (against the database or
//! through a running service): a table by default, the API's own JSON bodies with `--json`.
//! Both modes hand the same wire types to these functions, so a command prints the same
//! thing whichever way it ran. A secret is printed once, to stdout.

use auth_api::{
    ApiKeyItem, CreatedKey, DeviceItem, MemberList, OrganizationList, RegisteredDevice,
    RotatedSecret,
};
use chrono::{DateTime, Utc};
use comfy_table::Table;
use serde::Serialize;

use crate::cli::CliError;

/// Prints `value` as pretty JSON.
///
/// # Errors
/// The value cannot be serialised.
pub fn print_json(value: &impl Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::Failed(e.to_string()))?;
    println!("{text}");
    Ok(())
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), |t| t.to_rfc3339())
}

fn key_table(items: &[ApiKeyItem]) -> Table {
    let mut table = Table::new();
    table.set_header([
        "id",
        "prefix",
        "name",
        "scopes",
        "status",
        "created",
        "expires",
        "last used",
    ]);
    for k in items {
        table.add_row([
            k.id.to_string(),
            k.prefix.clone(),
            k.name.clone(),
            k.scopes.join(","),
            k.status.to_string(),
            k.created_at.to_rfc3339(),
            time(k.expires_at),
            time(k.last_used_at),
        ]);
    }
    table
}

/// `api-keys list`: the API's `GET /api-keys` body (`{items}`) with `--json`.
///
/// # Errors
/// [`print_json`]'s.
pub fn keys(items: &[ApiKeyItem], json: bool) -> Result<(), CliError> {
    if json {
        return print_json(&auth_api::ApiKeyList {
            items: items.to_vec(),
        });
    }
    println!("{}", key_table(items));
    Ok(())
}

/// `api-keys info` and `api-keys revoke`.
///
/// # Errors
/// [`print_json`]'s.
pub fn key(item: &ApiKeyItem, json: bool) -> Result<(), CliError> {
    if json {
        return print_json(item);
    }
    println!("{}", key_table(std::slice::from_ref(item)));
    Ok(())
}

/// `api-keys usage`: a row per period.
///
/// # Errors
/// [`print_json`]'s.
pub fn usage(usage: &auth_api::KeyUsage, json: bool) -> Result<(), CliError> {
    if json {
        return print_json(usage);
    }
    let mut table = Table::new();
    table.set_header([
        "start",
        "valid",
        "insufficient_scope",
        "rate_limited",
        "usage_exceeded",
        "expired",
        "revoked",
    ]);
    for item in &usage.items {
        table.add_row([
            item.start
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            item.valid.to_string(),
            item.insufficient_scope.to_string(),
            item.rate_limited.to_string(),
            item.usage_exceeded.to_string(),
            item.expired.to_string(),
            item.revoked.to_string(),
        ]);
    }
    println!("{table}");
    Ok(())
}

/// `api-keys create` and `api-keys rotate`: the new key, its secret once.
///
/// # Errors
/// [`print_json`]'s.
pub fn created_key(created: &CreatedKey, json: bool) -> Result<(), CliError> {
    if json {
        return print_json(created);
    }
    let mut table = Table::new();
    table.set_header(["id", "prefix", "name", "organization", "scopes", "expires"]);
    table.add_row([
        created.id.to_string(),
        created.prefix.clone(),
        created.name.clone(),
        created.organization_id.to_string(),
        created.scopes.join(","),
        time(created.expires_at),
    ]);
    println!("{table}");
    println!("key (shown once, store it now): {}", created.key.expose());
    Ok(())
}

const DEVICE_HEADER: [&str; 6] = [
    "device id",
    "name",
    "organization",
    "status",
    "created",
    "last authenticated",
];

fn device_table(items: &[DeviceItem]) -> Table {
    let mut table = Table::new();
    table.set_header(DEVICE_HEADER);
    for d in items {
        table.add_row([
            d.device_id.clone(),
            d.name.clone(),
            d.organization_id.to_string(),
            d.status.to_string(),
            d.created_at.to_rfc3339(),
            time(d.last_authenticated_at),
        ]);
    }
    table
}

/// `devices list`: the API's `GET /devices` body (`{items}`) with `--json`.
///
/// # Errors
/// [`print_json`]'s.
pub fn devices(items: &[DeviceItem], json: bool) -> Result<(), CliError> {
    if json {
        return print_json(&auth_api::DeviceList {
            items: items.to_vec(),
        });
    }
    println!("{}", device_table(items));
    Ok(())
}

/// `devices info` and `devices revoke`.
///
/// # Errors
/// [`print_json`]'s.
pub fn device(item: &DeviceItem, json: bool) -> Result<(), CliError> {
    if json {
        return print_json(item);
    }
    println!("{}", device_table(std::slice::from_ref(item)));
    Ok(())
}

/// `devices register`: the device as `devices info` shows it, and its secret once.
///
/// # Errors
/// [`print_json`]'s.
pub fn registered_device(registered: &RegisteredDevice, json: bool) -> Result<(), CliError> {
    if json {
        return print_json(registered);
    }
    let mut table = Table::new();
    table.set_header(DEVICE_HEADER);
    table.add_row([
        registered.device_id.clone(),
        registered.name.clone(),
        registered.organization_id.to_string(),
        registered.status.to_string(),
        registered.created_at.to_rfc3339(),
        time(None),
    ]);
    println!("{table}");
    println!(
        "secret (shown once, store it on the device now): {}",
        registered.device_secret.expose()
    );
    Ok(())
}

/// `devices rotate-secret`: the new secret, once.
///
/// # Errors
/// [`print_json`]'s.
pub fn rotated_secret(rotated: &RotatedSecret, json: bool) -> Result<(), CliError> {
    if json {
        return print_json(rotated);
    }
    println!("device {}", rotated.device_id);
    println!(
        "secret (shown once, store it on the device now): {}",
        rotated.device_secret.expose()
    );
    Ok(())
}

fn role(role: auth_api::Role) -> String {
    serde_json::to_value(role)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "-".into())
}

/// `organizations list`: the API's `GET /organizations` body with `--json`.
///
/// # Errors
/// [`print_json`]'s.
pub fn organizations(list: &OrganizationList, json: bool) -> Result<(), CliError> {
    if json {
        return print_json(list);
    }
    let mut table = Table::new();
    table.set_header(["id", "name", "role"]);
    for org in &list.items {
        table.add_row([org.id.to_string(), org.name.clone(), role(org.role)]);
    }
    println!("{table}");
    Ok(())
}

/// `organizations members`: the API's `GET /organizations/{org_id}/members` body with
/// `--json`.
///
/// # Errors
/// [`print_json`]'s.
pub fn members(list: &MemberList, json: bool) -> Result<(), CliError> {
    if json {
        return print_json(list);
    }
    let mut table = Table::new();
    table.set_header(["user id", "email", "role"]);
    for member in &list.items {
        table.add_row([
            member.user_id.to_string(),
            member.email.clone(),
            role(member.role),
        ]);
    }
    println!("{table}");
    Ok(())
}

/// `users list`: the API's `GET /admin/users` body with `--json`.
///
/// # Errors
/// [`print_json`]'s.
pub fn admin_users(list: &auth_api::AdminUserList, json: bool) -> Result<(), CliError> {
    if json {
        return print_json(list);
    }
    let mut table = Table::new();
    table.set_header([
        "id",
        "email",
        "admin",
        "disabled",
        "verified",
        "mfa",
        "last login",
    ]);
    let yes = |b: bool| if b { "yes" } else { "" }.to_owned();
    for user in &list.items {
        table.add_row([
            user.id.to_string(),
            user.email.clone(),
            yes(user.is_admin),
            yes(user.disabled),
            yes(user.email_verified),
            yes(user.mfa_enabled),
            time(user.last_login_at),
        ]);
    }
    println!("{table}");
    if let Some(next) = list.next_after {
        println!("more: --after {next}");
    }
    Ok(())
}

/// `organizations list` without `--user`: every organization (`--json`: an array of the
/// API's organization bodies).
///
/// # Errors
/// [`print_json`]'s.
pub fn all_organizations(
    orgs: &[auth_core::model::Organization],
    json: bool,
) -> Result<(), CliError> {
    let bodies: Vec<auth_api::OrganizationBody> = orgs
        .iter()
        .map(|o| auth_api::OrganizationBody {
            id: o.id.as_uuid(),
            name: o.name.as_str().to_owned(),
            created_at: o.created_at,
        })
        .collect();
    if json {
        return print_json(&serde_json::json!({ "items": bodies }));
    }
    let mut table = Table::new();
    table.set_header(["id", "name", "created"]);
    for org in &bodies {
        table.add_row([
            org.id.to_string(),
            org.name.clone(),
            org.created_at.to_rfc3339(),
        ]);
    }
    println!("{table}");
    Ok(())
}

/// Prints audit events as they are read: one JSON object per line with `--json` (JSON lines,
/// for a SIEM), else a table printed at the end (or, when following, after each page).
#[derive(Debug)]
pub struct EventPrinter {
    json: bool,
    table: Option<Table>,
    any: bool,
}

impl EventPrinter {
    /// A printer for the chosen format.
    #[must_use]
    pub fn new(json: bool) -> Self {
        Self {
            json,
            table: None,
            any: false,
        }
    }

    /// Prints (or holds) one event.
    ///
    /// # Errors
    /// The event cannot be written out.
    pub fn print(&mut self, event: auth_api::AuditEvent) -> Result<(), CliError> {
        self.any = true;
        if self.json {
            let line = serde_json::to_string(&event)
                .map_err(|e| CliError::Failed(format!("cannot write an event: {e}")))?;
            println!("{line}");
            return Ok(());
        }
        let table = self.table.get_or_insert_with(|| {
            let mut table = Table::new();
            table.set_header(["seq", "at", "action", "actor", "target", "ip", "request id"]);
            table
        });
        let actor = match &event.actor.id {
            Some(id) => format!("{} {id}", event.actor.kind),
            None => event.actor.kind.to_string(),
        };
        table.add_row([
            event.seq.to_string(),
            event
                .at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            event.action,
            actor,
            format!("{} {}", event.target.kind, event.target.id),
            event.ip.unwrap_or_default(),
            event.request_id.unwrap_or_default(),
        ]);
        Ok(())
    }

    /// Prints what is held (following: after each page).
    pub fn flush(&mut self) {
        if let Some(table) = self.table.take() {
            println!("{table}");
        }
    }

    /// Prints what is held; says so when there was nothing.
    pub fn finish(mut self) {
        if !self.any {
            eprintln!("no events");
        }
        self.flush();
    }
}
