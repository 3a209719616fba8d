//! Building and attributing rejections: the `error_detail` of a NACK
//! (`google.rpc.Status`, code INVALID_ARGUMENT) naming each rejected
//! resource and why, one per line, as the sink's validation reported it.

use envoy_types::pb::google::rpc::Status;

/// `google.rpc.Code.INVALID_ARGUMENT`.
pub const INVALID_ARGUMENT: i32 = 3;

/// The `error_detail` of a NACK: `<resource>: <error>` per rejected resource.
pub fn error_detail(errors: &[(String, String)]) -> Status {
    let message = errors
        .iter()
        .map(|(name, error)| format!("{name}: {error}"))
        .collect::<Vec<_>>()
        .join("\n");
    Status {
        code: INVALID_ARGUMENT,
        message,
        details: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_each_rejected_resource() {
        let status = error_detail(&[
            (
                "a".into(),
                "connect_timeout: invalid duration \"5x\"".into(),
            ),
            ("b".into(), "lb_policy: not supported".into()),
        ]);
        assert_eq!(status.code, 3);
        assert_eq!(
            status.message,
            "a: connect_timeout: invalid duration \"5x\"\nb: lb_policy: not supported"
        );
    }
}
