package main

import (
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/qmorch/qmorch/deploy"
)

// recordDeploy adds the nodes where deploy put the file in place to qmorch's record (read by
// `qmorch list`). A record that cannot be written is a warning: the deploy itself succeeded.
func recordDeploy(errOut io.Writer, stateDir, file string, content []byte, rep *deploy.Report) {
	entries := deploy.DeployedEntries(rep, filepath.Base(file), time.Now())
	if len(entries) == 0 {
		return
	}
	if err := deploy.OpenState(stateDir).Record(content, entries...); err != nil {
		fmt.Fprintf(errOut, "warning: record of deployed units (qmorch list will not show this deploy): %v\n", err)
	}
}
