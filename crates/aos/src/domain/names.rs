//! Altinn org and app names: checked once, then safe as URL and blob path segments.

/// An Altinn org short name (e.g. `ttd`): 2–30 lower-case ASCII letters and digits, starting
/// with a letter, inner hyphens allowed. Safe as a URL and blob path segment.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OrgName(String);

impl OrgName {
    pub fn parse(value: &str) -> Result<Self, String> {
        check_name(value, 2, 30).map(|()| OrgName(value.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An Altinn app name (e.g. `become-application-owner`): Altinn Studio's rule — lower-case
/// ASCII letters, digits and hyphens, starting with a letter, not ending with a hyphen.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AppName(String);

impl AppName {
    pub fn parse(value: &str) -> Result<Self, String> {
        check_name(value, 2, 64).map(|()| AppName(value.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check_name(value: &str, min: usize, max: usize) -> Result<(), String> {
    if !(min..=max).contains(&value.len()) {
        return Err(format!("must be {min}–{max} characters"));
    }
    if !value.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("must start with a lower-case letter".into());
    }
    if value.ends_with('-') {
        return Err("must not end with a hyphen".into());
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err("may contain only lower-case letters, digits and hyphens".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_altinn_rules() {
        assert!(OrgName::parse("ttd").is_ok());
        assert!(OrgName::parse("t").is_err());
        assert!(AppName::parse("become-application-owner").is_ok());
        assert!(AppName::parse("-x").is_err());
        assert!(AppName::parse("x-").is_err());
        assert!(AppName::parse("æøå").is_err());
    }
}
