package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/qmorch/qmorch/internal/safefile"
)

// deployLocal writes the file into a local tree (Request.Root) instead of nodes:
// ROOT/${RWETCFS}/containers/systemd/NAME.container, atomically (temp file in the same
// directory, fsync, rename), mode 0644, and only when the content differs. Paths that would
// leave ROOT (through "..", or symlinks pointing outside) are refused.
func (d *Deployer) deployLocal(req Request, unit string) (*Report, error) {
	start := d.opts.clock.Now()
	rel := filepath.Join(strings.TrimPrefix(d.opts.rwetcfs, "/"), "containers", "systemd")
	if !filepath.IsLocal(rel) {
		return nil, invalidf("rwetcfs %q escapes the root", d.opts.rwetcfs)
	}
	res := Result{
		Unit: unit,
		Path: filepath.Join(req.Root, rel, req.File),
	}
	rep := &Report{DryRun: req.DryRun, Results: []Result{res}}
	if req.DryRun {
		rep.Results[0].Action = ActionPlanned
		rep.Results[0].Plan = []Step{{Op: "write", Target: res.Path,
			Detail: fmt.Sprintf("%s, mode 0644, temp file in the same directory then rename; skipped when unchanged", describeBytes(len(req.Content)))}}
		return rep, nil
	}
	changed, err := writeLocal(req.Root, rel, req.File, req.Content)
	rep.Results[0].Duration = d.opts.clock.Now().Sub(start)
	if err != nil {
		rep.Results[0].Action = ActionFailed
		rep.Results[0].Err = fmt.Errorf("write %s: %w", res.Path, err)
		return rep, rep.Results[0].Err
	}
	rep.Results[0].Action = ActionUnchanged
	if changed {
		rep.Results[0].Action = ActionInstalled
	}
	return rep, nil
}

// writeLocal writes root/rel/name through an os.Root, which refuses any path or symlink that
// resolves outside root.
func writeLocal(root, rel, name string, content []byte) (changed bool, err error) {
	fi, err := os.Stat(root)
	if err != nil {
		return false, withClass(ErrInvalid, fmt.Errorf("root %s: %w", root, err))
	}
	if !fi.IsDir() {
		return false, invalidf("root %s is not a directory", root)
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return false, err
	}
	defer r.Close()
	if err := r.MkdirAll(rel, 0o755); err != nil {
		return false, err
	}
	dest := filepath.Join(rel, name)
	// A FIFO, device or oversized file at dest is never read (it would block or not end):
	// it differs, and the rename below replaces it.
	if old, err := safefile.ReadRoot(r, dest, MaxFileSize); err == nil {
		if st, err := r.Lstat(dest); err == nil && st.Mode().IsRegular() && st.Mode().Perm() == 0o644 && bytes.Equal(old, content) {
			return false, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) && !safefile.Refused(err) {
		return false, err
	}
	tmp := filepath.Join(rel, "."+name+".qmorch-"+randomHex())
	f, err := r.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return false, err
	}
	defer func() {
		if err != nil {
			_ = r.Remove(tmp)
		}
	}()
	if _, err = f.Write(content); err == nil {
		if err = f.Chmod(0o644); err == nil { // umask may have narrowed it
			err = f.Sync()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, err
	}
	if err = r.Rename(tmp, dest); err != nil {
		return false, err
	}
	if dir, derr := r.Open(rel); derr == nil { // make the rename durable
		_ = dir.Sync()
		_ = dir.Close()
	}
	return true, nil
}
