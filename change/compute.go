package change

import (
	"context"
	"fmt"
	"strings"
)

// Computed is what a change request carries, as git computes it in the requester's checkout.
type Computed struct {
	Base, Source, Tree string
	Paths              []string
	Commits            []Commit
}

// Compute computes a change request in a checkout: the base (what tip returns: the ref's tip as
// the checkout knows it; "" for a ref to be created), the source commit (a revision a person
// gave), the merge tree of the source into the base, the paths it changes from the base's tree
// and the commits it brings with their identities.
func Compute(ctx context.Context, g *Git, ref, source string, tip func(context.Context) (string, error)) (Computed, error) {
	var c Computed
	base, err := tip(ctx)
	if err != nil {
		return c, fmt.Errorf("read the tip of %s: %w", ref, err)
	}
	if base == "" {
		base = strings.Repeat("0", 40)
	}
	if c.Source, err = g.ResolveCommit(ctx, source); err != nil {
		return c, err
	}
	if c.Source == base {
		return c, fmt.Errorf("%s is already the tip of %s: nothing to merge", source, ref)
	}
	if len(base) != len(c.Source) && IsZero(base) {
		base = strings.Repeat("0", len(c.Source))
	}
	c.Base = base
	if c.Tree, c.Paths, err = Recompute(ctx, g, base, c.Source); err != nil {
		return c, err
	}
	if c.Commits, err = g.Commits(ctx, c.Source, base); err != nil {
		return c, err
	}
	if len(c.Commits) == 0 {
		return c, fmt.Errorf("%s is already merged into %s (%s): nothing to merge", source, ref, short(base))
	}
	if len(c.Commits) > MaxCommits || len(c.Paths) > MaxPaths {
		return c, fmt.Errorf("the change brings %d commits and changes %d paths; at most %d and %d: split it", len(c.Commits), len(c.Paths), MaxCommits, MaxPaths)
	}
	return c, nil
}

// Recompute computes the merge tree of source into base and the paths it changes from the
// base's tree: what a reviewer's checkout must agree on with what was filed.
func Recompute(ctx context.Context, g *Git, base, source string) (tree string, paths []string, err error) {
	if tree, err = g.MergeTree(ctx, base, source); err != nil {
		return "", nil, err
	}
	baseTree := ""
	if !IsZero(base) {
		if baseTree, err = g.Tree(ctx, base); err != nil {
			return "", nil, err
		}
	}
	if paths, err = g.ChangedPaths(ctx, baseTree, tree); err != nil {
		return "", nil, err
	}
	return tree, paths, nil
}

// DiffStat returns git's summary of the difference between a commit and a tree.
func (g *Git) DiffStat(ctx context.Context, from, tree string) (string, error) {
	if err := checkID("tree", tree); err != nil {
		return "", err
	}
	if IsZero(from) {
		empty, err := g.EmptyTree(ctx)
		if err != nil {
			return "", err
		}
		from = empty
	} else if err := checkID("base", from); err != nil {
		return "", err
	}
	out, err := g.run(ctx, nil, "diff", "--stat", "--no-renames", "--no-color", from, tree)
	return strings.TrimRight(string(out), "\n"), err
}

// Config returns a git configuration value of the repository ("" when unset).
func (g *Git) Config(ctx context.Context, key string) (string, error) {
	out, err := g.run(ctx, nil, "config", "--get", "--end-of-options", key)
	if ge, ok := err.(*GitError); ok && ge.Code == 1 {
		return "", nil
	}
	return strings.TrimSpace(string(out)), err
}
