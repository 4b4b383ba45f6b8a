//! A base URL every Altinn, storage and Key Vault URL is joined onto.

use std::net::IpAddr;

use url::Url;

/// A base URL that is `https` (or `http` on a loopback address) and ends with exactly one `/`,
/// so `{base}{path}` joins never produce `//` or drop a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl(Url);

impl BaseUrl {
    /// The problem, when `value` is not such a URL; the caller names where it came from
    /// (the settings turn it into an error naming the setting).
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut url =
            Url::parse(value.trim()).map_err(|e| format!("`{value}` is not a URL ({e})"))?;
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => false,
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => {
                return Err(format!(
                    "`{value}` must be https (http is accepted only for loopback addresses)"
                ));
            }
        }
        if url.host().is_none() || url.query().is_some() || url.fragment().is_some() {
            return Err(format!("`{value}` must be a plain base URL"));
        }
        let path = format!("{}/", url.path().trim_end_matches('/'));
        url.set_path(&path);
        Ok(BaseUrl(url))
    }

    pub fn url(&self) -> &Url {
        &self.0
    }

    /// The URL's text, ending with `/`.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// `self` joined with a relative path made of already-validated segments.
    pub fn join(&self, relative: &str) -> Url {
        let mut url = self.0.clone();
        let path = format!("{}{}", url.path(), relative.trim_start_matches('/'));
        url.set_path(&path);
        url
    }

    /// Host and port as they must appear in URLs we trust (e.g. an event `source`).
    pub fn same_origin(&self, other: &Url) -> bool {
        other.scheme() == self.0.scheme()
            && other.host() == self.0.host()
            && other.port_or_known_default() == self.0.port_or_known_default()
    }
}

impl std::fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_is_refused_except_on_loopback() {
        assert!(BaseUrl::parse("http://platform.tt02.altinn.no/").is_err());
        assert!(BaseUrl::parse("http://127.0.0.1:1234").is_ok());
        assert!(BaseUrl::parse("http://localhost:1234/").is_ok());
        assert!(BaseUrl::parse("ftp://127.0.0.1/").is_err());
        assert!(BaseUrl::parse("not a url").is_err());
    }

    #[test]
    fn base_url_join_keeps_one_slash() {
        let b = BaseUrl::parse("https://platform.tt02.altinn.no").unwrap();
        assert_eq!(
            b.join("/storage/api/v1/x").as_str(),
            "https://platform.tt02.altinn.no/storage/api/v1/x"
        );
    }
}
