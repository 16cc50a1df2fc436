package blob_test

import (
	"os/exec"
	"strings"
	"testing"
)

// Packages that need only the Store interface link no cloud SDK: the Azure adapter is its own
// package (vault/blob/azure), imported only where a store is configured (the server). Before
// the split, importing weights linked 36 Azure SDK packages.
func TestInterfaceLinksNoCloudSDK(t *testing.T) {
	// go test puts the go command of its own toolchain first in PATH.
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list dependencies: %v", err)
	}
	for _, pkg := range []string{"rampart.dev/rampart/vault/blob", "rampart.dev/rampart/weights", "rampart.dev/rampart/api"} {
		out, err := exec.Command(goTool, "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		var cloud []string
		for dep := range strings.FieldsSeq(string(out)) {
			if strings.HasPrefix(dep, "github.com/Azure/") || strings.HasPrefix(dep, "rampart.dev/rampart/vault/blob/azure") {
				cloud = append(cloud, dep)
			}
		}
		if len(cloud) > 0 {
			t.Errorf("%s links %d Azure packages (%s …); keep cloud adapters in their own packages and import them only where a store is opened", pkg, len(cloud), cloud[0])
		}
	}
}
