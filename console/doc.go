// Package console owns the IT staff's web pages on the admin listener: the
// live Overview, one page per series with its timeline, the routing rules
// and their tester, the dead letters with replay, and the effective
// configuration with a file check and a reload. It renders server-side with
// html/template; its templates, style sheet and one small script (live
// updates by server-sent events) are embedded, so there is no front-end build.
//
// It must not hold business logic or parse DICOM of its own: every fact it
// shows or action it takes comes through the small interfaces of Options,
// which the node wires to ingest (routing explanations), output (the
// dead-letter store), configs (validation) and its own reload; the series
// timelines come from the node's structured log through Journal. It guards
// what it serves: authentication when asked for, CSRF checks on every POST,
// security headers on every response, no patient name or ID unless ShowPHI,
// and a log line with the user for every action.
package console
