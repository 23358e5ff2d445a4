//! The account holders known to this AS, from the `users` variable.

use serde::Deserialize;

use crate::config::{ConfigError, Variables, required, var};
use crate::types::{Cnpj, Cpf};

/// An account holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The stable, never reassigned subject (TKN-6).
    pub sub: String,
    /// The holder's CPF.
    pub cpf: Cpf,
    /// The companies the holder may act for (TKN-9: an array).
    pub cnpj: Vec<Cnpj>,
    /// Display name.
    pub name: Option<String>,
    /// E-mail.
    pub email: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    sub: String,
    cpf: String,
    cnpj: Option<OneOrMany>,
    name: Option<String>,
    email: Option<String>,
}

/// All account holders, with unique `sub` and `cpf`.
#[derive(Debug, Clone, Default)]
pub struct Users(Vec<User>);

impl Users {
    /// Reads `users`. Problems name the entry by position, never its contents (they are PII).
    pub fn load(vars: &dyn Variables) -> Result<Self, ConfigError> {
        Self::parse(&required(vars, var::USERS)?)
    }

    /// Parses the JSON array.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let bad = |i: usize, why: &str| ConfigError::new(var::USERS, format!("users[{i}]: {why}"));
        let raw: Vec<RawUser> = serde_json::from_str(text).map_err(|e| {
            ConfigError::new(
                var::USERS,
                format!(
                    "not a JSON array of users with sub, cpf and optional cnpj, name, email: \
                     problem at line {}, column {}",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        let mut users: Vec<User> = Vec::with_capacity(raw.len());
        for (i, r) in raw.into_iter().enumerate() {
            if r.sub.is_empty() || r.sub.len() > 255 || r.sub.chars().any(char::is_control) {
                return Err(bad(i, "sub must be 1 to 255 printable characters"));
            }
            let cpf = Cpf::parse(&r.cpf).ok_or_else(|| bad(i, "cpf is not a valid CPF"))?;
            let cnpj = match r.cnpj {
                None => vec![],
                Some(OneOrMany::One(c)) => vec![c],
                Some(OneOrMany::Many(cs)) => cs,
            }
            .iter()
            .map(|c| Cnpj::parse(c).ok_or_else(|| bad(i, "cnpj is not a valid CNPJ")))
            .collect::<Result<Vec<_>, _>>()?;
            if users.iter().any(|u| u.sub == r.sub) {
                return Err(bad(i, "sub is not unique"));
            }
            if users.iter().any(|u| u.cpf == cpf) {
                return Err(bad(i, "cpf is not unique"));
            }
            users.push(User {
                sub: r.sub,
                cpf,
                cnpj,
                name: r.name,
                email: r.email,
            });
        }
        Ok(Self(users))
    }

    /// The holder with subject `sub`.
    pub fn by_sub(&self, sub: &str) -> Option<&User> {
        self.0.iter().find(|u| u.sub == sub)
    }

    /// Every holder, in the order of `users`.
    pub fn iter(&self) -> impl Iterator<Item = &User> {
        self.0.iter()
    }

    /// The holder with CPF `cpf`.
    pub fn by_cpf(&self, cpf: &Cpf) -> Option<&User> {
        self.0.iter().find(|u| &u.cpf == cpf)
    }

    /// Whether any holder acts for a company: then `cnpj` is a supported claim (DISC-11).
    pub fn serves_legal_persons(&self) -> bool {
        self.0.iter().any(|u| !u.cnpj.is_empty())
    }
}
