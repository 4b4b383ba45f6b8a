//! What is wrong with the settings: one [`SettingsError`] per setting, gathered into
//! [`InvalidSettings`] so that one run names every setting to fix, not one per run.

use std::fmt;

/// A setting that is missing or malformed; the message names the setting.
#[derive(Debug, thiserror::Error)]
#[error("setting {name}: {problem}")]
pub struct SettingsError {
    pub name: String,
    pub problem: String,
}

impl SettingsError {
    pub fn new(name: &str, problem: impl Into<String>) -> Self {
        SettingsError {
            name: name.to_string(),
            problem: problem.into(),
        }
    }
}

/// Every setting that is missing or malformed, at least one, in the order they were read.
///
/// Shown as one line, because the process prints it as its one line on stderr (and under the
/// Functions host each line is a log record of its own): a single problem exactly as
/// [`SettingsError`] shows it, several as `N settings to fix: setting A: …; setting B: …`.
#[derive(Debug)]
pub struct InvalidSettings(Vec<SettingsError>);

impl InvalidSettings {
    /// Each problem, one per setting.
    pub fn errors(&self) -> &[SettingsError] {
        &self.0
    }

    /// The settings to fix, in the order they were read.
    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|e| e.name.as_str()).collect()
    }
}

impl fmt::Display for InvalidSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [only] = self.0.as_slice() {
            return write!(f, "{only}");
        }
        write!(f, "{} settings to fix: ", self.0.len())?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidSettings {}

impl From<SettingsError> for InvalidSettings {
    fn from(e: SettingsError) -> Self {
        InvalidSettings(vec![e])
    }
}

/// Collects problems while the settings are read, so reading goes on after a bad setting and
/// the end result names them all. One problem per setting: a second one about a setting already
/// named (a value two areas derive something from) adds nothing the operator can act on.
#[derive(Debug, Default)]
pub(super) struct Problems(Vec<SettingsError>);

impl Problems {
    /// Keeps `problem` unless its setting is already named.
    pub fn push(&mut self, problem: SettingsError) {
        if !self.0.iter().any(|e| e.name == problem.name) {
            self.0.push(problem);
        }
    }

    /// The value, or `None` with its problem kept.
    pub fn check<T>(&mut self, result: Result<T, SettingsError>) -> Option<T> {
        result.map_err(|e| self.push(e)).ok()
    }

    /// The value, or `None` with every problem of an area kept.
    pub fn check_all<T>(&mut self, result: Result<T, InvalidSettings>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(InvalidSettings(problems)) => {
                problems.into_iter().for_each(|e| self.push(e));
                None
            }
        }
    }

    /// Every problem kept: for the caller that has a `None` from [`Problems::check`] in hand,
    /// which always kept one.
    pub fn into_error(self) -> InvalidSettings {
        debug_assert!(
            !self.0.is_empty(),
            "a value is missing but no problem was kept"
        );
        InvalidSettings(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_problem_reads_as_before_and_several_as_one_line() {
        let one = InvalidSettings::from(SettingsError::new("A", "is required but not set"));
        assert_eq!(one.to_string(), "setting A: is required but not set");

        let mut problems = Problems::default();
        assert_eq!(problems.check(Ok::<_, SettingsError>(1)), Some(1));
        assert_eq!(
            problems.check::<()>(Err(SettingsError::new("A", "is required but not set"))),
            None
        );
        problems.push(SettingsError::new("A", "said twice"));
        problems.push(SettingsError::new("B", "`x` is not a URL"));
        let all = problems.into_error();
        assert_eq!(all.names(), ["A", "B"]);
        assert_eq!(
            all.to_string(),
            "2 settings to fix: setting A: is required but not set; setting B: `x` is not a URL"
        );
    }
}
