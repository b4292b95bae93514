//! Filesystem target (a mounted path, e.g. NFS). Stage: execute (backend).
