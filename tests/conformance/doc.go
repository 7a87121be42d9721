// Package conformance holds wire-level checks of the BlueChi D-Bus API that run against any
// BlueChi bus: set QMORCH_CONFORMANCE_BUS (a D-Bus address), QMORCH_CONFORMANCE_NODE (an online
// node) and optionally QMORCH_CONFORMANCE_UNIT (a unit that may be started and stopped there).
// Without QMORCH_CONFORMANCE_BUS the checks run against the test double (tests/testcontroller)
// with in-memory nodes on a private root-only bus. Checks that need to take a node offline or
// hold a job use the double's control hooks and skip against a real bus.
package conformance
