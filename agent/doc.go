// Package agent reads, merges and writes BlueChi configuration files the way
// bluechi-agent and bluechi-controller (BlueChi 1.3.0) do.
//
// BlueChi parses with inih built with max_line_length=520 and
// stop_on_first_error, and merges files with its own cfg.c. This package
// copies both byte for byte, including the surprising parts (519-byte line
// chunks, inline comments only after whitespace, continuation lines joined
// without a separator, the same key twice in one file concatenated, `Key=`
// unsetting only across files). The conformance vectors under
// shared/conformance/bluechi-config pin the behaviour; see conformance_test.go.
//
// Everything is pure: files come from an fs.FS rooted at the target's "/",
// the hostname and environment are inputs, and warnings are returned in
// results instead of being logged.
package agent
