// Package azure is the weights vault's blob store in Azure Blob Storage: a blob.Store over
// block blobs in one container. It is the only package that links the Azure SDK, so that
// packages needing only the blob.Store interface (weights, api) do not; the server imports it
// when vault.store.driver is azure. It passes the blob conformance suite (blobtest) against
// Azurite, the Azure Storage emulator.
package azure

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"

	rblob "rampart.dev/rampart/vault/blob"
)

// Defaults and limits of the Azure store.
const (
	// DefaultBlockSize is the size of the blocks Put stages.
	DefaultBlockSize = 8 << 20
	// DefaultConcurrency is how many blocks one Put holds in memory, one being filled
	// while the others upload: 4 × 8 MiB = 32 MiB per Put.
	DefaultConcurrency = 4
	// maxBlocks is the service's limit of committed blocks per blob, so an object holds
	// at most BlockSize × 50,000 bytes (about 390 GiB with the default block size).
	maxBlocks = 50_000
	// maxBlockSize is the service's largest block (4000 MiB); the store keeps to 256 MiB,
	// because each block in flight is a buffer in memory.
	maxBlockSize = 256 << 20
)

// Config says where an Azure store keeps its objects and how it authenticates. Give
// exactly one credential: AccountName and AccountKey, SAS, or TokenCredential.
type Config struct {
	// AccountURL is the blob service endpoint: https://ACCOUNT.blob.core.windows.net, or
	// Azurite's http://127.0.0.1:10000/devstoreaccount1. Plain http is refused except on
	// a loopback address.
	AccountURL string
	// Container holds the store's objects (3-63 characters: a-z, 0-9, "-").
	Container string
	// CreateContainer creates the container if it does not exist yet.
	CreateContainer bool

	// AccountName and AccountKey (base64, as the portal shows it) authenticate with the
	// account's shared key.
	AccountName, AccountKey string
	// SAS is a shared access signature ("sv=…&sig=…") for the container or the account.
	SAS string
	// TokenCredential authenticates with Microsoft Entra ID, for example with
	// azidentity.DefaultAzureCredential (the caller brings it; this package does not import
	// azidentity).
	TokenCredential azcore.TokenCredential

	// BlockSize is the size of the blocks Put stages (DefaultBlockSize if 0; 64 KiB to
	// 256 MiB). It bounds the largest object: BlockSize × 50,000.
	BlockSize int64
	// Concurrency is how many blocks one Put holds in memory and uploads at once
	// (DefaultConcurrency if 0). A Put uses at most BlockSize × Concurrency bytes of
	// buffers.
	Concurrency int
	// Transport sends the HTTP requests (the SDK's default client if nil).
	Transport policy.Transporter
}

// Environment variables read by CredentialsFromEnv: the names the Azure CLI uses.
const (
	EnvStorageAccount = "AZURE_STORAGE_ACCOUNT"
	EnvStorageKey     = "AZURE_STORAGE_KEY"
	EnvStorageSAS     = "AZURE_STORAGE_SAS_TOKEN"
)

// CredentialsFromEnv fills AccountName and AccountKey, or SAS, from the environment
// (AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY, or AZURE_STORAGE_SAS_TOKEN), leaving fields
// already set alone. getenv is usually os.Getenv.
func (c *Config) CredentialsFromEnv(getenv func(string) string) {
	if c.AccountName == "" {
		c.AccountName = getenv(EnvStorageAccount)
	}
	if c.AccountKey == "" {
		c.AccountKey = getenv(EnvStorageKey)
	}
	if c.SAS == "" && c.AccountKey == "" {
		c.SAS = strings.TrimPrefix(getenv(EnvStorageSAS), "?")
	}
}

// Store is a blob.Store in an Azure Blob Storage container, as block blobs named by their keys.
//
// Put stages the object in blocks of BlockSize, Concurrency at a time, under block IDs unique
// to that Put, and commits the block list last: the commit makes the new object visible at
// once, so a reader sees the old object or the whole new one, and a Put that fails or is
// cancelled leaves only uncommitted blocks, which the service discards (within a week, or at
// the next commit to the blob). An object smaller than a block is one request. When two Puts
// to one key overlap, the second commit may fail (the first discarded its blocks); neither
// mixes with the other. Reads stream the response; a read that is retried after a network
// error asks for the same version (If-Match), so it fails rather than splice two versions.
type Store struct {
	container   *container.Client
	name        string
	blockSize   int64
	concurrency int
	buffers     sync.Pool
}

// New returns a store for the container cfg names, creating the container first if
// cfg.CreateContainer is set (the only request New makes).
func New(ctx context.Context, cfg Config) (*Store, error) {
	u, err := url.Parse(cfg.AccountURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("azure: account URL %q: want https://ACCOUNT.blob.core.windows.net (or http://127.0.0.1:PORT/ACCOUNT for Azurite)", cfg.AccountURL)
	}
	if u.Scheme == "http" && !loopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("azure: account URL %q: plain http is allowed only on loopback (Azurite); use https", cfg.AccountURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("azure: account URL %q: put a SAS in Config.SAS, not in the URL", cfg.AccountURL)
	}
	if err := checkContainerName(cfg.Container); err != nil {
		return nil, err
	}
	bs, conc := cfg.BlockSize, cfg.Concurrency
	if bs == 0 {
		bs = DefaultBlockSize
	}
	if conc == 0 {
		conc = DefaultConcurrency
	}
	if bs < 64<<10 || bs > maxBlockSize {
		return nil, fmt.Errorf("azure: block size %d: want 64 KiB to 256 MiB", bs)
	}
	if conc < 1 || conc > 64 {
		return nil, fmt.Errorf("azure: concurrency %d: want 1 to 64", conc)
	}

	opts := &service.ClientOptions{}
	opts.Telemetry.ApplicationID = "rampart"
	opts.Transport = cfg.Transport
	serviceURL := strings.TrimSuffix(cfg.AccountURL, "/") + "/"
	var svc *service.Client
	creds := 0
	for _, set := range []bool{cfg.AccountKey != "", cfg.SAS != "", cfg.TokenCredential != nil} {
		if set {
			creds++
		}
	}
	switch {
	case creds != 1:
		return nil, fmt.Errorf("azure: store for container %q: give exactly one credential (account key, SAS or token credential), not %d", cfg.Container, creds)
	case cfg.AccountKey != "":
		if cfg.AccountName == "" {
			return nil, fmt.Errorf("azure: store: an account key needs the account name (%s)", EnvStorageAccount)
		}
		cred, err := service.NewSharedKeyCredential(cfg.AccountName, cfg.AccountKey)
		if err != nil {
			return nil, fmt.Errorf("azure: shared key for account %q: %w", cfg.AccountName, err)
		}
		svc, err = service.NewClientWithSharedKeyCredential(serviceURL, cred, opts)
		if err != nil {
			return nil, fmt.Errorf("azure: client: %w", err)
		}
	case cfg.SAS != "":
		svc, err = service.NewClientWithNoCredential(serviceURL+"?"+strings.TrimPrefix(cfg.SAS, "?"), opts)
	default:
		svc, err = service.NewClient(serviceURL, cfg.TokenCredential, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("azure: client: %w", err)
	}
	s := &Store{container: svc.NewContainerClient(cfg.Container), name: cfg.Container, blockSize: bs, concurrency: conc}
	s.buffers.New = func() any { b := make([]byte, s.blockSize); return &b }
	if cfg.CreateContainer {
		if _, err := s.container.Create(ctx, nil); err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
			return nil, fmt.Errorf("azure: create the azure container %q: %w", cfg.Container, err)
		}
	}
	return s, nil
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func checkContainerName(name string) error {
	ok := len(name) >= 3 && len(name) <= 63 && name[0] != '-' && name[len(name)-1] != '-' && !strings.Contains(name, "--")
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-'
	}
	if !ok {
		return fmt.Errorf("azure: container name %q: want 3-63 characters of a-z, 0-9 and single inner hyphens", name)
	}
	return nil
}

// BlockSize is the size of the blocks Put stages.
func (s *Store) BlockSize() int64 { return s.blockSize }

// Concurrency is how many blocks one Put holds in memory at once.
func (s *Store) Concurrency() int { return s.concurrency }

// Container is the container's name.
func (s *Store) Container() string { return s.name }

func (s *Store) error(op, key string, err error) error {
	if bloberror.HasCode(err, bloberror.BlobNotFound) {
		return fmt.Errorf("azure: %s %s: %w", op, rblob.QuoteKey(key), rblob.ErrNotFound)
	}
	if bloberror.HasCode(err, bloberror.ContainerNotFound) {
		return fmt.Errorf("azure: %s %s: azure container %q does not exist (create it, or set CreateContainer): %w", op, rblob.QuoteKey(key), s.name, err)
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) && re.StatusCode == 404 && re.ErrorCode == "" {
		return fmt.Errorf("azure: %s %s: %w", op, rblob.QuoteKey(key), rblob.ErrNotFound)
	}
	return fmt.Errorf("azure: %s %s: %w", op, rblob.QuoteKey(key), err)
}

func (s *Store) getBuffer() *[]byte  { return s.buffers.Get().(*[]byte) }
func (s *Store) putBuffer(b *[]byte) { s.buffers.Put(b) }

// Put implements blob.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if err := rblob.CheckKey(key); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	bb := s.container.NewBlockBlobClient(key)
	first := s.getBuffer()
	n, err := io.ReadFull(contextReader{ctx, r}, *first)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		// The whole object fits in one block: one Put Blob request replaces it.
		defer s.putBuffer(first)
		if err := ctx.Err(); err != nil {
			return int64(n), fmt.Errorf("azure: put %s: %w", rblob.QuoteKey(key), err)
		}
		if _, err := bb.Upload(ctx, streaming.NopCloser(bytes.NewReader((*first)[:n])), nil); err != nil {
			return 0, s.error("put", key, err)
		}
		return int64(n), nil
	case err != nil:
		s.putBuffer(first)
		return int64(n), fmt.Errorf("azure: put %s: reading the object's data: %w", rblob.QuoteKey(key), err)
	}
	return s.putBlocks(ctx, bb, key, first, contextReader{ctx, r})
}

// putBlocks stages first and the rest of r as blocks, at most s.concurrency buffers at a
// time, then commits the block list.
func (s *Store) putBlocks(parent context.Context, bb *blockblob.Client, key string, first *[]byte, r io.Reader) (int64, error) {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	var upload [16]byte
	_, _ = rand.Read(upload[:])

	free := make(chan *[]byte, s.concurrency) // buffers whose upload finished
	buffers := 1
	var wg sync.WaitGroup
	var ids []string
	total := int64(0)
	stage := func(buf *[]byte, n int) {
		id := blockID(upload, len(ids))
		ids = append(ids, id)
		total += int64(n)
		wg.Go(func() {
			defer func() { free <- buf }()
			if _, err := bb.StageBlock(ctx, id, streaming.NopCloser(bytes.NewReader((*buf)[:n])), nil); err != nil {
				cancel(s.error("put", key, err))
			}
		})
	}
	stage(first, len(*first))
	for ctx.Err() == nil {
		var buf *[]byte
		select {
		case buf = <-free:
		default:
			if buffers < s.concurrency {
				buf = s.getBuffer()
				buffers++
			} else {
				select {
				case buf = <-free:
				case <-ctx.Done():
				}
			}
		}
		if buf == nil {
			break
		}
		n, err := io.ReadFull(r, *buf)
		if n > 0 && len(ids) == maxBlocks {
			cancel(fmt.Errorf("azure: put %s: the object is larger than %d blocks of %d bytes, the most a blob holds at this block size", rblob.QuoteKey(key), maxBlocks, s.blockSize))
			free <- buf
			break
		}
		if n > 0 {
			stage(buf, n)
		} else {
			free <- buf
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			cancel(fmt.Errorf("azure: put %s: reading the object's data: %w", rblob.QuoteKey(key), err))
		}
	}
	wg.Wait()
	for range buffers {
		s.putBuffer(<-free)
	}
	if err := context.Cause(ctx); err != nil {
		if parent.Err() != nil { // the caller's cancellation, not one of ours (already wrapped)
			err = fmt.Errorf("azure: put %s: %w", rblob.QuoteKey(key), err)
		}
		return total, err
	}
	// The commit is what makes the new object visible, whole.
	if _, err := bb.CommitBlockList(ctx, ids, nil); err != nil {
		return total, s.error("put", key, err)
	}
	return total, nil
}

// blockID is the base64 of the Put's random id and the block's index: every ID of a blob must
// have the same length, and IDs unique to each Put keep overlapping Puts from using each
// other's blocks.
func blockID(upload [16]byte, i int) string {
	var b [24]byte
	copy(b[:], upload[:])
	binary.BigEndian.PutUint64(b[16:], uint64(i))
	return base64.StdEncoding.EncodeToString(b[:])
}

// contextReader stops reading when ctx is done.
type contextReader struct {
	ctx context.Context
	r   io.Reader
}

func (c contextReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Get implements blob.Store.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, rblob.Info, error) {
	if err := rblob.CheckKey(key); err != nil {
		return nil, rblob.Info{}, err
	}
	resp, err := s.container.NewBlobClient(key).DownloadStream(ctx, nil)
	if err != nil {
		return nil, rblob.Info{}, s.error("get", key, err)
	}
	info := rblob.Info{Key: key}
	if resp.ContentLength != nil {
		info.Size = *resp.ContentLength
	}
	if resp.LastModified != nil {
		info.Modified = *resp.LastModified
	}
	return resp.NewRetryReader(ctx, &blob.RetryReaderOptions{MaxRetries: 3}), info, nil
}

// GetRange implements blob.Store. A range that starts at or past the end of the object is empty.
func (s *Store) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := rblob.CheckKey(key); err != nil {
		return nil, err
	}
	if err := rblob.CheckRange(key, off, n); err != nil {
		return nil, err
	}
	if n == 0 {
		if _, err := s.Stat(ctx, key); err != nil {
			return nil, err
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	count := n
	if n > math.MaxInt64-off {
		count = blob.CountToEnd
	}
	rng := blob.HTTPRange{Offset: off, Count: count}
	resp, err := s.container.NewBlobClient(key).DownloadStream(ctx, &blob.DownloadStreamOptions{Range: rng})
	if bloberror.HasCode(err, bloberror.InvalidRange) {
		// The object exists and ends at or before off.
		return io.NopCloser(strings.NewReader("")), nil
	}
	if err != nil {
		return nil, s.error("get range of", key, err)
	}
	return resp.NewRetryReader(ctx, &blob.RetryReaderOptions{MaxRetries: 3}), nil
}

// Stat implements blob.Store.
func (s *Store) Stat(ctx context.Context, key string) (rblob.Info, error) {
	if err := rblob.CheckKey(key); err != nil {
		return rblob.Info{}, err
	}
	p, err := s.container.NewBlobClient(key).GetProperties(ctx, nil)
	if err != nil {
		return rblob.Info{}, s.error("stat", key, err)
	}
	info := rblob.Info{Key: key}
	if p.ContentLength != nil {
		info.Size = *p.ContentLength
	}
	if p.LastModified != nil {
		info.Modified = *p.LastModified
	}
	return info, nil
}

// Delete implements blob.Store. It deletes the blob's snapshots with it; what the account keeps
// after a delete (soft delete, versioning) is the account's policy.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := rblob.CheckKey(key); err != nil {
		return err
	}
	include := blob.DeleteSnapshotsOptionTypeInclude
	if _, err := s.container.NewBlobClient(key).Delete(ctx, &blob.DeleteOptions{DeleteSnapshots: &include}); err != nil {
		return s.error("delete", key, err)
	}
	return nil
}

// List implements blob.Store. Blobs whose names are not valid keys (written by something else)
// are left out.
func (s *Store) List(ctx context.Context, prefix string) ([]rblob.Info, error) {
	if err := rblob.CheckPrefix(prefix); err != nil {
		return nil, err
	}
	opts := &container.ListBlobsFlatOptions{}
	if prefix != "" {
		opts.Prefix = &prefix
	}
	var out []rblob.Info
	pager := s.container.NewListBlobsFlatPager(opts)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, s.error("list", prefix, err)
		}
		for _, it := range page.Segment.BlobItems {
			if it.Name == nil || rblob.CheckKey(*it.Name) != nil || !strings.HasPrefix(*it.Name, prefix) {
				continue
			}
			info := rblob.Info{Key: *it.Name}
			if p := it.Properties; p != nil {
				if p.ContentLength != nil {
					info.Size = *p.ContentLength
				}
				if p.LastModified != nil {
					info.Modified = *p.LastModified
				}
			}
			out = append(out, info)
		}
	}
	slices.SortFunc(out, func(a, b rblob.Info) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

var _ rblob.Store = (*Store)(nil)
