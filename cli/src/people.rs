//! `lasect login`, `user`, `token`, `agent`, `audit`: the identity and administration commands.

use lasect_api_contract::agents::{Agent, AgentList, CreateEnrollmentToken, EnrollmentToken};
use lasect_api_contract::audit::AuditList;
use lasect_api_contract::auth::{
    ApiToken, ChangePassword, CreateToken, CreatedToken, LoginRequest, LogoutRequest, Role,
    TokenList, TokenPair,
};
use lasect_api_contract::users::{CreateUser, CreatedUser, GrantBody, SetRole, User, UserList};
use lasect_pki::Secret;
use serde::Serialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::api_client::{ApiClient, ClientEnv, typed};
use crate::args::{
    AgentCommand, AgentTokenCommand, AuditCommand, OutputFormat, TokenCommand, UserCommand,
};
use crate::config_file::{self, ConfigFile};
use crate::exit::Usage;
use crate::json_table::{parse_duration_secs, render, render_one};
use crate::printable::escape;
use crate::{encode_segment, render as render_body};

const USER_COLUMNS: &[(&str, &str)] = &[
    ("username", "username"),
    ("role", "role"),
    ("grants", "grants"),
    ("created", "created_at"),
    ("disabled", "disabled_at"),
    ("must change password", "must_change_password"),
];
const TOKEN_COLUMNS: &[(&str, &str)] = &[
    ("id", "id"),
    ("name", "name"),
    ("user", "username"),
    ("role", "role"),
    ("created", "created_at"),
    ("expires", "expires_at"),
    ("last used", "last_used_at"),
    ("revoked", "revoked_at"),
];
const AGENT_COLUMNS: &[(&str, &str)] = &[
    ("id", "id"),
    ("host", "hostname"),
    ("version", "version"),
    ("last seen", "last_seen"),
    ("cert expiry", "cert_not_after"),
    ("backlog batches", "spool_backlog_batches"),
    ("backlog bytes", "spool_backlog_bytes"),
    ("disabled", "disabled"),
];
const AUDIT_COLUMNS: &[(&str, &str)] = &[
    ("time", "time"),
    ("actor", "actor"),
    ("action", "action"),
    ("target", "target"),
    ("source", "source"),
    ("outcome", "outcome"),
    ("error", "error"),
];

fn duration(text: &str, what: &str) -> anyhow::Result<u64> {
    parse_duration_secs(text).ok_or_else(|| {
        Usage(format!(
            "{what} must be like 90s, 15m, 12h or 30d, not {text:?}"
        ))
        .into()
    })
}

fn role_of(text: &Option<String>) -> anyhow::Result<Option<Role>> {
    text.as_deref()
        .map(|r| {
            r.parse::<Role>()
                .map_err(|_| Usage(format!("role must be admin, user or viewer, not {r:?}")).into())
        })
        .transpose()
}

/// `env=prod:viewer` as a grant.
fn grant(text: &str) -> anyhow::Result<GrantBody> {
    let parsed = text.split_once('=').and_then(|(key, rest)| {
        let (value, role) = rest.rsplit_once(':')?;
        Some((key, value, role.parse::<Role>().ok()?))
    });
    match parsed {
        Some((key, value, role)) if !key.is_empty() => Ok(GrantBody {
            key: key.to_owned(),
            value: value.to_owned(),
            role,
        }),
        _ => Err(Usage(format!(
            "a grant is KEY=VALUE:ROLE with ROLE admin, user or viewer, not {text:?}"
        ))
        .into()),
    }
}

fn grants(texts: &[String]) -> anyhow::Result<Vec<GrantBody>> {
    texts.iter().map(|g| grant(g)).collect()
}

/// A typed answer as the JSON the output and the tables are made of.
fn value_of(answer: &impl Serialize) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(answer)?)
}

/// With `prompt`, asks (without echo at a terminal); otherwise the first line of stdin.
fn read_password(prompt: bool) -> anyhow::Result<Secret> {
    crate::password::read("Password: ", !prompt)
}

fn json_text(body: &Value) -> anyhow::Result<String> {
    render_body(OutputFormat::Json, body, |_| Ok(String::new()))
}

pub async fn login(
    env: ClientEnv,
    username: String,
    password_stdin: bool,
    expires_in: String,
    output: OutputFormat,
) -> anyhow::Result<String> {
    let expires = duration(&expires_in, "--expires-in")?;
    let Some(path) = config_file::default_path() else {
        return Err(Usage("neither HOME nor XDG_CONFIG_HOME is set".to_owned()).into());
    };
    let anonymous = ClientEnv {
        token: None,
        ..env.clone()
    };
    // A URL that would be refused (http:// off loopback) is refused before the password is asked.
    let client = ApiClient::from_env(anonymous.clone())?;
    let password = read_password(!password_stdin)?;
    let session = log_in(&client, &username, &password).await?;
    let authed = ApiClient::from_env(ClientEnv {
        token: Some(Secret::new(session.access_token.as_str())),
        ..anonymous
    })?;
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "cli".to_owned());
    let name = format!(
        "lasect login {host} {}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    );
    let created: CreatedToken = authed
        .post(
            "api/v1/tokens",
            &CreateToken {
                name: name.clone(),
                role: None,
                expires_in_secs: Some(expires),
            },
        )
        .await?;
    // The session itself is no longer needed: the stored API token replaces it.
    logout(&authed, session.refresh_token).await;
    config_file::save(
        &path,
        &ConfigFile {
            url: env.url.clone(),
            token: Some(created.secret),
            ca_file: env.ca_file.clone(),
        },
    )?;
    let result = json!({
        "username": session.username,
        "role": session.role,
        "config_file": path.display().to_string(),
        "token": created.token,
    });
    match output {
        OutputFormat::Json => json_text(&result),
        OutputFormat::Table => Ok(format!(
            "logged in as {} ({}); API token {:?} saved in {}\n",
            escape(&username),
            session.role.map_or("no global role", Role::as_str),
            name,
            path.display()
        )),
    }
}

/// `lasect user passwd`: sets a new password with the old one. With `username` it logs in
/// first (the way to finish an admin reset); otherwise it acts for the stored token's user.
/// Every session of the user ends; API tokens keep working.
pub async fn passwd(
    env: ClientEnv,
    username: Option<String>,
    password_stdin: bool,
    output: OutputFormat,
) -> anyhow::Result<String> {
    let old = crate::password::read("Current password: ", password_stdin)?;
    let new = crate::password::read("New password: ", password_stdin)?;
    if !password_stdin {
        let again = crate::password::read("New password again: ", false)?;
        if again != new {
            return Err(Usage("the new passwords differ".to_owned()).into());
        }
    }
    let client = match &username {
        Some(name) => {
            let anonymous = ApiClient::from_env(ClientEnv {
                token: None,
                ..env.clone()
            })?;
            let session = log_in(&anonymous, name, &old).await?;
            ApiClient::from_env(ClientEnv {
                token: Some(Secret::new(session.access_token)),
                ..env.clone()
            })?
        }
        None => ApiClient::from_env(env.clone())?,
    };
    // The body's copies of the passwords are zeroed when it drops, also on an error.
    let change = Zeroizing::new(ChangePassword {
        old_password: old.expose_secret().to_owned(),
        new_password: new.expose_secret().to_owned(),
    });
    let session: TokenPair = client.post("api/v1/auth/password", &*change).await?;
    // The answer opens a new session the CLI does not keep: end it.
    let fresh = ApiClient::from_env(ClientEnv {
        token: Some(Secret::new(session.access_token)),
        ..env
    })?;
    logout(&fresh, session.refresh_token).await;
    let result = json!({"username": session.username, "changed": true});
    match output {
        OutputFormat::Json => json_text(&result),
        OutputFormat::Table => Ok(format!(
            "password changed for {}; its other sessions ended\n",
            escape(&session.username)
        )),
    }
}

/// `POST /api/v1/auth/login`; the body's copy of the password is zeroed when it drops.
async fn log_in(
    client: &ApiClient,
    username: &str,
    password: &Secret,
) -> anyhow::Result<TokenPair> {
    let request = Zeroizing::new(LoginRequest {
        username: username.to_owned(),
        password: password.expose_secret().to_owned(),
    });
    client.post("api/v1/auth/login", &*request).await
}

/// Ends the session of `refresh_token`; best effort (it expires anyway).
async fn logout(client: &ApiClient, refresh_token: String) {
    let body = LogoutRequest {
        refresh_token: Some(refresh_token),
    };
    let _ = client.post::<_, Value>("api/v1/auth/logout", &body).await;
}

pub async fn user(
    client: &ApiClient,
    command: UserCommand,
    output: OutputFormat,
) -> anyhow::Result<String> {
    let (body, single) = match command {
        UserCommand::List => {
            let users: UserList = client.get("api/v1/users").await?;
            (value_of(&users)?, false)
        }
        UserCommand::Create {
            username,
            role: r,
            grants: g,
            password_stdin,
        } => {
            let password = if password_stdin {
                Some(read_password(false)?)
            } else {
                None
            };
            let request = Zeroizing::new(CreateUser {
                username,
                password: password.as_ref().map(|p| p.expose_secret().to_owned()),
                role: role_of(&r)?,
                grants: grants(&g)?,
            });
            let created: CreatedUser = client.post("api/v1/users", &*request).await?;
            if output == OutputFormat::Json {
                return json_text(&value_of(&created)?);
            }
            let mut text = render_one(&value_of(&created.user)?, USER_COLUMNS);
            if let Some(p) = &created.generated_password {
                text.push_str(&format!("generated password (shown once): {}\n", escape(p)));
            }
            return Ok(text);
        }
        UserCommand::SetRole {
            username,
            role: r,
            grants: g,
        } => {
            let request = SetRole {
                role: role_of(&r)?,
                grants: grants(&g)?,
            };
            let path = format!("api/v1/users/{}/role", encode_segment(&username));
            let user: User = client.post(&path, &request).await?;
            (value_of(&user)?, true)
        }
        UserCommand::Passwd { .. } => {
            return Err(anyhow::anyhow!(
                "user passwd needs the client settings, not a client"
            ));
        }
        UserCommand::Disable { username } => {
            let path = format!("api/v1/users/{}/disable", encode_segment(&username));
            let user: User = client.post(&path, &json!({})).await?;
            (value_of(&user)?, true)
        }
    };
    match (output, single) {
        (OutputFormat::Json, _) => json_text(&body),
        (OutputFormat::Table, true) => Ok(render_one(&body, USER_COLUMNS)),
        (OutputFormat::Table, false) => Ok(render(list(&body, "users"), USER_COLUMNS)),
    }
}

fn list<'a>(body: &'a Value, key: &str) -> &'a [Value] {
    body[key].as_array().map_or(&[], Vec::as_slice)
}

pub async fn token(
    client: &ApiClient,
    command: TokenCommand,
    output: OutputFormat,
) -> anyhow::Result<String> {
    match command {
        TokenCommand::Create {
            name,
            role: r,
            expires_in,
        } => {
            let request = CreateToken {
                name,
                role: role_of(&r)?,
                expires_in_secs: expires_in
                    .map(|e| duration(&e, "--expires-in"))
                    .transpose()?,
            };
            let created: CreatedToken = client.post("api/v1/tokens", &request).await?;
            match output {
                OutputFormat::Json => json_text(&serde_json::to_value(&created)?),
                OutputFormat::Table => Ok(format!(
                    "{}token (shown once, store it now): {}\n",
                    render_one(&serde_json::to_value(&created.token)?, TOKEN_COLUMNS),
                    escape(&created.secret)
                )),
            }
        }
        TokenCommand::List => {
            let tokens: TokenList = client.get("api/v1/tokens").await?;
            let body = serde_json::to_value(&tokens)?;
            match output {
                OutputFormat::Json => json_text(&body),
                OutputFormat::Table => Ok(render(list(&body, "tokens"), TOKEN_COLUMNS)),
            }
        }
        TokenCommand::Revoke { id } => {
            let path = format!("api/v1/tokens/{id}");
            let revoked: ApiToken = typed(client.delete_json(&path).await?, &path)?;
            let body = serde_json::to_value(&revoked)?;
            match output {
                OutputFormat::Json => json_text(&body),
                OutputFormat::Table => Ok(render_one(&body, TOKEN_COLUMNS)),
            }
        }
    }
}

pub async fn agent(
    client: &ApiClient,
    command: AgentCommand,
    output: OutputFormat,
) -> anyhow::Result<String> {
    match command {
        AgentCommand::List => {
            let agents: AgentList = client.get("api/v1/agents").await?;
            let body = value_of(&agents)?;
            match output {
                OutputFormat::Json => json_text(&body),
                OutputFormat::Table => Ok(render(list(&body, "agents"), AGENT_COLUMNS)),
            }
        }
        AgentCommand::Token(AgentTokenCommand::Create {
            ttl,
            uses,
            agent_id,
        }) => {
            let request = CreateEnrollmentToken {
                ttl_secs: duration(&ttl, "--ttl")?,
                uses,
                agent_id,
            };
            let token: EnrollmentToken = client
                .post("api/v1/agents/enrollment-tokens", &request)
                .await?;
            match output {
                OutputFormat::Json => json_text(&value_of(&token)?),
                OutputFormat::Table => Ok(format!(
                    "enrollment token (shown once): {}\nuses: {}  expires: {}  agent: {}\n",
                    escape(&token.token),
                    token.max_uses,
                    escape(&token.expires_at),
                    escape(token.agent_id.as_deref().unwrap_or("any"))
                )),
            }
        }
        AgentCommand::Token(AgentTokenCommand::List) => {
            crate::agents_cmd::list_tokens(client, output).await
        }
        AgentCommand::Token(AgentTokenCommand::Revoke { id }) => {
            crate::agents_cmd::revoke_token(client, id, output).await
        }
        AgentCommand::Cert(c) => crate::agents_cmd::cert(client, c, output).await,
        AgentCommand::Disable { id } => {
            let path = format!("api/v1/agents/{}/disable", encode_segment(&id));
            let agent: Agent = client.post(&path, &json!({})).await?;
            let body = value_of(&agent)?;
            match output {
                OutputFormat::Json => json_text(&body),
                OutputFormat::Table => Ok(render_one(&body, AGENT_COLUMNS)),
            }
        }
    }
}

pub async fn audit(
    client: &ApiClient,
    command: AuditCommand,
    output: OutputFormat,
) -> anyhow::Result<String> {
    let AuditCommand::List {
        since,
        actor,
        action,
        limit,
    } = command;
    let mut query = vec![format!("limit={limit}")];
    for (key, value) in [("since", since), ("actor", actor), ("action", action)] {
        if let Some(v) = value {
            query.push(format!("{key}={}", encode_segment(&v)));
        }
    }
    let entries: AuditList = client
        .get(&format!("api/v1/audit?{}", query.join("&")))
        .await?;
    let body = value_of(&entries)?;
    match output {
        OutputFormat::Json => json_text(&body),
        OutputFormat::Table => Ok(render(list(&body, "entries"), AUDIT_COLUMNS)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_parse() {
        assert_eq!(
            value_of(&grant("env=prod:viewer").expect("grant")).expect("json"),
            json!({"key": "env", "value": "prod", "role": "viewer"})
        );
        assert_eq!(grant("a=b:c:user").expect("grant").value, "b:c");
        for bad in ["env", "env=prod", "=x:user", "env=prod:root"] {
            assert!(grant(bad).is_err(), "{bad}");
        }
    }
}
