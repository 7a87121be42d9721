// Package unitfile reads, edits and writes systemd unit-file syntax as used by Quadlet files
// (NAME.container) and their drop-ins (NAME.container.d/*.conf).
//
// The syntax follows systemd.syntax(7) and systemd's config parser (src/shared/conf-parser.c):
//
//   - A physical line ends at "\n", "\r\n", "\r" or a NUL byte (systemd's read_line). A UTF-8 byte
//     order mark at the very start of the file is ignored.
//   - A physical line may be at most MaxLineSize (1 MiB) bytes; so may a joined continuation.
//   - Lines whose first non-whitespace character is '#' or ';' are comments. They are skipped
//     everywhere, also between the physical lines of a continued assignment.
//   - A line ending in an unescaped backslash continues on the next line: the backslash is replaced
//     by a single space and the next line (with its leading whitespace) is appended. A line ending in
//     "\\\\" (an escaped backslash) does not continue, and neither does a line whose backslash is
//     followed by trailing whitespace. An empty line ends a continuation.
//   - "[Name]" opens a section; repeating a header reopens (merges into) the same section.
//   - "Key=Value": whitespace around the key and the value is removed; everything else, including
//     quotes, escapes and specifiers, is kept verbatim: interpreting it is the consumer's job.
//
// Where systemd only warns and ignores a line, this package follows podman's Quadlet parser, which
// rejects the file: an assignment before the first section, a line that is neither a comment, a
// section header nor a Key=Value assignment, an empty key, a bad section name, and the removed
// ".include" directive all return a *ParseError with the file and line.
//
// Known difference from podman's parser (pkg/systemd/parser, podman 5.x): podman joins a
// continuation without the space that systemd inserts, strips trailing whitespace before looking
// for the backslash, and treats "\\\\" at the end of a line as a continuation. Files that rely on
// those corner cases are read differently by systemd and by Quadlet; this package follows systemd.
//
// The model is one ordered list of lines ([File.Lines]) that keeps comments, blank lines, line
// numbers and the original text, so an unmodified file is written back byte for byte by
// [File.Bytes]. Lookups see all headers of a section as one section. [Merge] applies drop-ins to a
// base file in the order Quadlet uses, keeping the file and line each value came from.
package unitfile
