//! authsome-netns: the Linux sandbox mechanics (namespaces, capture sockets, mounts, capability
//! drop). Knows nothing of HTTP. All `unsafe` lives in `sys`.
