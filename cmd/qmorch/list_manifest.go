package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/qmorch/qmorch/deploy"
)

// recordDeploy adds the nodes where deploy put the file in place to qmorch's record (read by
// `qmorch list` and `remove`). A record that cannot be written does not fail the deploy (the
// files are in place), so it becomes a warning on each of those nodes' results: JSON consumers
// see it in results[].warnings, and it goes to stderr with the other warnings.
func recordDeploy(stateDir, file string, content []byte, rep *deploy.Report) {
	entries := deploy.DeployedEntries(rep, filepath.Base(file), time.Now())
	if len(entries) == 0 {
		return
	}
	err := deploy.OpenState(stateDir).Record(content, entries...)
	if err == nil {
		return
	}
	w := fmt.Sprintf("deployed, but not recorded in qmorch's record of deployed units (qmorch list and remove will not know it): %v", err)
	for i := range rep.Results {
		for _, e := range entries {
			if rep.Results[i].Node == e.Node {
				rep.Results[i].Warnings = append(rep.Results[i].Warnings, w)
				break
			}
		}
	}
}
