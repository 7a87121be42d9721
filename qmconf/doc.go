// Package qmconf knows QM's host layout and the files qmorch reads and writes around it.
//
//   - Nested Quadlet files: ValidateQuadlet checks a NAME.container before deploy touches a node and
//     tells which unit it produces; NestedQuadletPath places it under ${RWETCFS}/containers/systemd.
//   - QM's own Quadlet: EffectiveQuadlet merges qm.container with its drop-ins the way podman's
//     Quadlet generator does (unit directories /run, /etc, /usr/share/containers/systemd; drop-in
//     directories qm.container.d and container.d; files masked by name, applied in byte order of
//     their names) and LayoutFromUnit / LoadLayout read RWETCFS, RWVARFS and ROOTFS from it.
//   - Node names: ValidateNodeName, ValidateProxyNodeName, TwinName ("qm." + host node).
//   - The QM agent configuration derived from the host agent (derive*.go).
//
// Unit-file syntax itself lives in the subpackage unitfile.
package qmconf
