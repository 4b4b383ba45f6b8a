//! The feedback step's settings (`crate::pipeline::feedback`): which events get a feedback
//! data element, and its template.

use std::path::PathBuf;

use super::error::SettingsError;
use super::source::{SettingSource, aos};

/// Used when `XMLFeedbackTemplatePath` is not set.
pub const DEFAULT_TEMPLATE: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
<ArchiveFeedback>\n  <InstanceId>{instanceId}</InstanceId>\n  <EventId>{eventId}</EventId>\n  \
<ArchivedAt>{archivedAt}</ArchivedAt>\n</ArchiveFeedback>\n";

/// The feedback step's settings; present only when feedback is on.
#[derive(Clone, Debug)]
pub struct FeedbackSettings {
    pub data_type: String,
    pub event_type: String,
    pub content_type: String,
    /// The template text, read at start so a missing file stops the process with one line.
    pub template: String,
    pub template_path: Option<PathBuf>,
}

impl FeedbackSettings {
    /// `XMLFeedbackDataType` + `XMLFeedbackEventType` (both or neither; neither = off),
    /// `XMLFeedbackTemplatePath`, `XMLFeedbackContentType`.
    pub fn from_source(src: &SettingSource) -> Result<Option<Self>, SettingsError> {
        let data_name = aos("XMLFeedbackDataType");
        let event_name = aos("XMLFeedbackEventType");
        let (data_type, event_type) = match (src.get(&data_name), src.get(&event_name)) {
            (None, None) => return Ok(None),
            (Some(d), Some(e)) => (d, e),
            (Some(_), None) => {
                return Err(SettingsError::new(
                    &event_name,
                    "is required when XMLFeedbackDataType is set (or unset both to turn feedback off)",
                ));
            }
            (None, Some(_)) => {
                return Err(SettingsError::new(
                    &data_name,
                    "is required when XMLFeedbackEventType is set (or unset both to turn feedback off)",
                ));
            }
        };
        let path_name = aos("XMLFeedbackTemplatePath");
        let template_path = src.get(&path_name).map(PathBuf::from);
        let template = match &template_path {
            None => DEFAULT_TEMPLATE.to_string(),
            Some(path) => std::fs::read_to_string(path).map_err(|e| {
                SettingsError::new(
                    &path_name,
                    format!("`{}` cannot be read: {e}", path.display()),
                )
            })?,
        };
        let content_type = src.string_or(&aos("XMLFeedbackContentType"), "application/xml");
        Ok(Some(FeedbackSettings {
            data_type,
            event_type,
            content_type,
            template,
            template_path,
        }))
    }

    /// The template with its placeholders replaced (values XML-escaped).
    pub fn render(&self, values: &[(&str, &str)]) -> String {
        let mut out = self.template.clone();
        for (name, value) in values {
            out = out.replace(&format!("{{{name}}}"), &xml_escape(value));
        }
        out
    }
}

fn xml_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced_and_escaped() {
        let f = FeedbackSettings {
            data_type: "feedback".into(),
            event_type: "t".into(),
            content_type: "application/xml".into(),
            template: "<a id=\"{instanceId}\">{eventId}{unknown}</a>".into(),
            template_path: None,
        };
        assert_eq!(
            f.render(&[("instanceId", "1/abc"), ("eventId", "x<&>")]),
            "<a id=\"1/abc\">x&lt;&amp;&gt;{unknown}</a>"
        );
    }
}
