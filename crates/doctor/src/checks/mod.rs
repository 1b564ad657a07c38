//! The checks, one module per group. Each is a function from the facts it needs to one
//! [`Check`]; [`check_host`](crate::check_host) calls them in [`CHECK_IDS`](crate::CHECK_IDS)
//! order.

mod btf;
mod filesystems;
pub(crate) mod kprobes;
mod modules;
mod privileges;
mod source_tree;

use kernelx_kbuild::ConfigValue;

pub(crate) use btf::{check_btf, check_kfunc_hook};
pub(crate) use filesystems::{check_bpffs, check_kcore, check_tracefs};
pub(crate) use kprobes::{check_kprobes, check_optprobes};
pub(crate) use modules::{check_kernel_headers, check_modules};
pub(crate) use privileges::check_root;
pub(crate) use source_tree::check_source_tree;

use crate::{Check, CheckStatus};

/// `CONFIG_X=y`, `CONFIG_X is not set`, `CONFIG_X is absent` for details.
pub(crate) fn describe_option(option: &str, value: Option<&ConfigValue>) -> String {
    match value {
        Some(ConfigValue::NotSet) => format!("{option} is not set"),
        Some(value) => format!("{option}={value}"),
        None => format!("{option} is absent"),
    }
}

/// An error and its causes on one line.
pub(crate) fn render(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A [`Check`] from its parts.
pub(crate) fn check(
    id: &'static str,
    title: &'static str,
    status: CheckStatus,
    detail: impl Into<String>,
    fix: Option<String>,
) -> Check {
    Check {
        id,
        title,
        status,
        detail: detail.into(),
        fix,
    }
}
