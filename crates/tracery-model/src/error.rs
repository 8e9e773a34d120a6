//! Error text for people who only see one line (a log field, a gRPC status, stderr).

/// `error: cause: cause...`: the error and each of its `source()`s, on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("cannot open the store")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_cause_follows_on_one_line() {
        let e = Outer(std::io::Error::other("disk full"));
        assert_eq!(super::chain(&e), "cannot open the store: disk full");
    }
}
