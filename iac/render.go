package iac

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// kustomizationNames are the file names that make a directory a kustomization, as kustomize
// looks for them.
var kustomizationNames = []string{"kustomization.yaml", "kustomization.yml", "Kustomization"}

// Render reads the objects declared in dir: when dir holds a kustomization, what kustomize
// builds from it (sigs.k8s.io/kustomize/api, with plugins, exec functions and Helm disabled and
// loading restricted to dir, its default); otherwise every *.yaml, *.yml and *.json file under
// dir (not under a directory whose name starts with '.'), decoded by Decode. Sources are made
// relative to dir. Remote bases are refused: what is checked is what is in the repository.
func Render(dir string) ([]Object, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("iac: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("iac: %s is not a directory; give the directory that holds the manifests or the kustomization", dir)
	}
	for _, n := range kustomizationNames {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			return renderKustomization(dir, n)
		}
	}
	return renderFiles(dir)
}

// renderFiles decodes every manifest file under dir, in lexical order.
func renderFiles(dir string) ([]Object, error) {
	var out []Object
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir // .git, .github: not manifests
			}
			return nil
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yaml", ".yml", ".json":
		default:
			return nil
		}
		if !d.Type().IsRegular() {
			return nil // a symlink may point outside the repository
		}
		rel, _ := filepath.Rel(dir, path)
		data, err := readBounded(path)
		if err != nil {
			return err
		}
		objs, err := Decode(filepath.ToSlash(rel), data)
		if err != nil {
			return err
		}
		out = append(out, objs...)
		if len(out) > MaxObjects {
			return fmt.Errorf("iac: %s: more than %d objects", dir, MaxObjects)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// readBounded reads a file of at most MaxFileBytes.
func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > MaxFileBytes {
		return nil, &DecodeError{Source: Source{File: path}, Reason: fmt.Sprintf("the file is %d bytes, more than the %d a manifest may be; split it", fi.Size(), MaxFileBytes)}
	}
	return os.ReadFile(path)
}

// renderKustomization builds the kustomization in dir.
func renderKustomization(dir, file string) ([]Object, error) {
	if err := refuseRemote(dir, map[string]bool{}); err != nil {
		return nil, err
	}
	opts := krusty.MakeDefaultOptions()
	opts.LoadRestrictions = types.LoadRestrictionsRootOnly
	opts.PluginConfig = types.DisabledPluginConfig()
	rm, err := krusty.MakeKustomizer(opts).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("iac: kustomize build %s: %w", dir, err)
	}
	var out []Object
	for _, r := range rm.Resources() {
		src := Source{File: filepath.ToSlash(filepath.Join(dir, file))}
		if o, err := r.GetOrigin(); err == nil && o != nil && o.Path != "" {
			src = Source{File: filepath.ToSlash(o.Path)}
		}
		js, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("iac: kustomize build %s: %s: %w", dir, r.CurId(), err)
		}
		objs, err := objects(src, js, 0)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

// refuseRemote refuses a kustomization (and the local ones it includes) that names a remote
// base or resource: kustomize would fetch it with git at build time, so what is checked would
// not be what the repository holds.
func refuseRemote(dir string, seen map[string]bool) error {
	abs, err := filepath.Abs(dir)
	if err != nil || seen[abs] {
		return err
	}
	seen[abs] = true
	var file string
	for _, n := range kustomizationNames {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			file = filepath.Join(dir, n)
			break
		}
	}
	if file == "" {
		return nil
	}
	data, err := readBounded(file)
	if err != nil {
		return err
	}
	var k struct {
		Resources  []string `json:"resources"`
		Bases      []string `json:"bases"`
		Components []string `json:"components"`
	}
	if err := yaml.Unmarshal(data, &k); err != nil {
		return fmt.Errorf("iac: %s: %w", file, err)
	}
	for _, r := range slices.Concat(k.Resources, k.Bases, k.Components) {
		p := filepath.Join(dir, r)
		fi, err := os.Stat(p)
		switch {
		case err == nil && fi.IsDir():
			if err := refuseRemote(p, seen); err != nil {
				return err
			}
		case err == nil:
		case errors.Is(err, fs.ErrNotExist):
			// kustomize would try to fetch it (git clone, or HTTP): what is checked would not be
			// what the repository holds.
			return fmt.Errorf("iac: %s: %q is not in the repository, and kustomize would fetch it at build time as a remote resource; vendor it into the repository so that what is checked is what is approved", file, r)
		default:
			return fmt.Errorf("iac: %s: %w", file, err)
		}
	}
	return nil
}
