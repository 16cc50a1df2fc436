package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"rampart.dev/rampart/detect/sigma"
	"rampart.dev/rampart/internal/output"
)

func newDetectSigmaCmd(g *globals) *cobra.Command {
	var mapping string
	cmd := &cobra.Command{
		Use:   "sigma FILE... [--mapping M]",
		Short: "Convert Sigma rules to DetectionRule policy documents, offline",
		Long: "Convert Sigma rule files (YAML) to DetectionRule documents through a field mapping " +
			"(docs/detection-sigma.md), and print them: as policy YAML to commit to the policy repository " +
			"(-o table, the default), or one rule per JSON line (-o json) or YAML document (-o yaml). " +
			"Every construct outside the supported subset is an error with file:line:column and what to do; " +
			"if any rule fails, nothing is printed and the exit status is 1.",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErr("%s needs at least one Sigma rule file", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			m := sigma.DefaultMapping()
			if mapping != "" {
				data, err := readSmall(mapping, sigma.MaxFileSize)
				if err != nil {
					return err
				}
				if m, err = sigma.ParseMapping(mapping, data); err != nil {
					return fmt.Errorf("mapping %s is invalid:\n%w", mapping, err)
				}
			}
			files := make([]sigma.File, 0, len(args))
			for _, name := range args {
				data, err := readSmall(name, sigma.MaxFileSize)
				if err != nil {
					return err
				}
				files = append(files, sigma.File{Name: name, Data: data})
			}
			rules, err := sigma.Convert(files, m)
			if err != nil {
				return fmt.Errorf("the Sigma rules do not convert:\n%w", err)
			}
			if g.output == output.Table {
				text, err := sigma.Marshal(rules)
				if err != nil {
					return err
				}
				_, err = os.Stdout.Write(text)
				return err
			}
			for _, r := range rules {
				var raw bytes.Buffer
				enc := json.NewEncoder(&raw)
				enc.SetEscapeHTML(false)
				if err := enc.Encode(r); err != nil {
					return err
				}
				if err := output.Stream(os.Stdout, g.output, bytes.TrimSpace(raw.Bytes()), nil); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&mapping, "mapping", "", "a field mapping file (YAML) added to the default mapping (docs/detection-sigma.md)")
	return cmd
}

// readSmall reads a local file of at most limit bytes.
func readSmall(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, usageErr("%s is a directory; give the Sigma rule files (e.g. %s/*.yml)", name, name)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes, the limit", name, limit)
	}
	return data, nil
}
