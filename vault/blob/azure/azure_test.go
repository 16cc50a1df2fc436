package azure_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"

	"rampart.dev/rampart/internal/testenv"
	"rampart.dev/rampart/vault/blob"
	"rampart.dev/rampart/vault/blob/azure"
	"rampart.dev/rampart/vault/blob/blobtest"
)

// TestAzure runs the conformance suite against a real Azure Blob Storage API: Azurite, started
// for this test. Small blocks (64 KiB) make the multi-block paths run on small objects.
func TestAzure(t *testing.T) {
	url, account, key := testenv.Azurite(t)
	var n atomic.Int64
	const block = 64 << 10
	blobtest.Run(t, blobtest.Harness{
		BlockSize: block,
		New: func(t *testing.T) blob.Store {
			s, err := azure.New(context.Background(), azure.Config{
				AccountURL: url, AccountName: account, AccountKey: key,
				Container: fmt.Sprintf("rampart-%d", n.Add(1)), CreateContainer: true, BlockSize: block,
			})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Outside: func(t *testing.T, _ blob.Store) []string { return azureAccount(t, url, account, key) },
	})
}

// azureAccount describes every blob of every container in the account, one line each.
func azureAccount(t *testing.T, url, account, key string) []string {
	t.Helper()
	cred, err := service.NewSharedKeyCredential(account, key)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := service.NewClientWithSharedKeyCredential(url+"/", cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var out []string
	pager := svc.NewListContainersPager(nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page.ContainerItems {
			out = append(out, "container "+*c.Name)
			blobs := svc.NewContainerClient(*c.Name).NewListBlobsFlatPager(&container.ListBlobsFlatOptions{})
			for blobs.More() {
				bp, err := blobs.NextPage(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, b := range bp.Segment.BlobItems {
					out = append(out, fmt.Sprintf("blob %s/%s %d", *c.Name, *b.Name, *b.Properties.ContentLength))
				}
			}
		}
	}
	return out
}

// TestAzureConfigErrors: a misconfigured store is refused before any request, with a message
// that says what to fix.
func TestAzureConfigErrors(t *testing.T) {
	for _, c := range []struct {
		cfg  azure.Config
		want string
	}{
		{azure.Config{AccountURL: "ftp://x", Container: "abc", SAS: "sv=1"}, "want https://"},
		{azure.Config{AccountURL: "http://storage.example.com", Container: "abc", SAS: "sv=1"}, "only on loopback"},
		{azure.Config{AccountURL: "https://a.blob.core.windows.net?sv=1", Container: "abc", SAS: "sv=1"}, "not in the URL"},
		{azure.Config{AccountURL: "https://a.blob.core.windows.net", Container: "Bad_Name", SAS: "sv=1"}, "container name"},
		{azure.Config{AccountURL: "https://a.blob.core.windows.net", Container: "abc"}, "exactly one credential"},
		{azure.Config{AccountURL: "https://a.blob.core.windows.net", Container: "abc", SAS: "sv=1", AccountKey: "a2V5", AccountName: "a"}, "exactly one credential"},
		{azure.Config{AccountURL: "https://a.blob.core.windows.net", Container: "abc", AccountKey: "a2V5"}, "needs the account name"},
		{azure.Config{AccountURL: "https://a.blob.core.windows.net", Container: "abc", SAS: "sv=1", BlockSize: 1024}, "block size"},
		{azure.Config{AccountURL: "https://a.blob.core.windows.net", Container: "abc", SAS: "sv=1", Concurrency: 1000}, "concurrency"},
	} {
		_, err := azure.New(context.Background(), c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewAzure(%+v) = %v, want an error saying %q", c.cfg, err, c.want)
		}
	}
}
