//! Loading (verifying) and attaching the socket hooks' programs: the two
//! program types (`CgroupSockAddr`, `SockOps`) share no aya trait, so each
//! step is one body instantiated per type.

use std::fs::File;

use aya::programs::links::FdLink;
use aya::programs::{CgroupAttachMode, CgroupSockAddr, Program, ProgramError, SockOps};
use aya::Ebpf;

use crate::{DatapathError, Hook};

/// A hook's program in the object, or which is missing.
pub(crate) fn hook_program(ebpf: &mut Ebpf, hook: Hook) -> Result<&mut Program, DatapathError> {
    ebpf.program_mut(hook.program_name())
        .ok_or(DatapathError::MissingProgram {
            hook: hook.attach_point(),
            program: hook.program_name(),
        })
}

pub(crate) fn program_error(
    hook: Hook,
    action: &'static str,
) -> impl Fn(ProgramError) -> DatapathError {
    move |source| DatapathError::Program {
        hook: hook.attach_point(),
        action,
        source,
    }
}

/// Loads `hook`'s program into the kernel (the verifier runs here) unless
/// it is loaded already.
pub(crate) fn verify(ebpf: &mut Ebpf, hook: Hook) -> Result<(), DatapathError> {
    verify_program(hook_program(ebpf, hook)?, hook)
}

/// [`verify`] on the program itself.
pub(crate) fn verify_program(program: &mut Program, hook: Hook) -> Result<(), DatapathError> {
    if program.fd().is_ok() {
        return Ok(());
    }
    // SockOps and CgroupSockAddr share no trait for load: one body,
    // instantiated per program type.
    macro_rules! load {
        ($program_type:ty) => {{
            let program: &mut $program_type = program
                .try_into()
                .map_err(program_error(hook, "type check"))?;
            program
                .load()
                .map_err(program_error(hook, "load (verifier)"))
        }};
    }
    if hook == Hook::SockopsRedirect {
        load!(SockOps)
    } else {
        load!(CgroupSockAddr)
    }
}

/// Attaches `hook`'s program (loaded by [`verify`]) to `cgroup`.
pub(crate) fn attach(ebpf: &mut Ebpf, hook: Hook, cgroup: &File) -> Result<FdLink, DatapathError> {
    verify(ebpf, hook)?;
    let program = hook_program(ebpf, hook)?;
    // SockOps and CgroupSockAddr share no trait for attach/take_link: one
    // body, instantiated per program type.
    macro_rules! attach {
        ($program_type:ty) => {{
            let program: &mut $program_type = program
                .try_into()
                .map_err(program_error(hook, "type check"))?;
            let link_id = program
                .attach(cgroup, CgroupAttachMode::Single)
                .map_err(program_error(hook, "attach"))?;
            let link = program
                .take_link(link_id)
                .map_err(program_error(hook, "take link"))?;
            FdLink::try_from(link)
        }};
    }
    let link = if hook == Hook::SockopsRedirect {
        attach!(SockOps)
    } else {
        attach!(CgroupSockAddr)
    };
    link.map_err(|source| DatapathError::NotALink {
        hook: hook.attach_point(),
        source,
    })
}
