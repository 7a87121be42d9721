package agent

import "fmt"

// WarningKind classifies things BlueChi accepts silently but that are almost
// always mistakes.
type WarningKind string

const (
	WarnDuplicateKey      WarningKind = "duplicate-key"       // same key twice in one file: values concatenate
	WarnLongLine          WarningKind = "long-line"           // line over 519 bytes: split into chunks
	WarnContinuationKey   WarningKind = "continuation-as-key" // indented Key=value joined to the previous value
	WarnNameTruncated     WarningKind = "name-truncated"      // section or key name over 49 bytes
	WarnCommentInQuotes   WarningKind = "comment-in-quotes"   // " ;" cut a quoted value
	WarnUnknownKey        WarningKind = "unknown-key"
	WarnWrongSection      WarningKind = "wrong-section" // key in a section the program never reads
	WarnSkippedDropIn     WarningKind = "skipped-drop-in"
	WarnNodeNameSpace     WarningKind = "node-name-space" // AllowedNodeNames entry with whitespace
	WarnDuplicateNode     WarningKind = "duplicate-node"
	WarnBadLogLevel       WarningKind = "bad-log-level"
	WarnNodeSectionUnread WarningKind = "node-section-unused" // [node X] without Allowed=true for an unlisted node
)

// Warning is one finding, tied to a file and line when there is one.
type Warning struct {
	Kind WarningKind
	Path string
	Line int
	Msg  string
}

func (w Warning) String() string {
	switch {
	case w.Path != "" && w.Line > 0:
		return fmt.Sprintf("%s:%d: %s", w.Path, w.Line, w.Msg)
	case w.Path != "":
		return fmt.Sprintf("%s: %s", w.Path, w.Msg)
	}
	return w.Msg
}
