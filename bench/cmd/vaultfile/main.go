// Command vaultfile runs package vaultfile in a process of its own, so that the benchmarks can
// compare Rampart's vault with the age command process for process (bench/vault_test.go):
//
//	vaultfile encrypt -keyring KEYRING IN OUT     # OUT (segments) and OUT.hdr (header)
//	vaultfile decrypt -keyring KEYRING IN OUT
//	vaultfile stream -keyring KEYRING -size BYTES                      # Rampart, no disk
//	vaultfile stream -tool age -identity AGE-IDENTITY-FILE -size BYTES # age, no disk
//
// stream prints one JSON line (vaultfile.StreamResult): timings and peak resident memory.
// run.sh builds it into bench/bin/vaultfile.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"rampart.dev/rampart/bench/vaultfile"
	"rampart.dev/rampart/vault"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "vaultfile:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: vaultfile encrypt|decrypt|stream [flags]")
	}
	fs := flag.NewFlagSet("vaultfile "+args[0], flag.ContinueOnError)
	keyring := fs.String("keyring", "", "the local keyring (vault.InitLocalKeyring)")
	tool := fs.String("tool", "rampart", "stream: rampart or age")
	identity := fs.String("identity", "", "stream -tool age: an age identity file")
	size := fs.Int64("size", 1<<30, "stream: plaintext bytes")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	ctx := context.Background()
	openKeyring := func() (*vault.LocalProvider, error) {
		if *keyring == "" {
			return nil, fmt.Errorf("%s needs -keyring", args[0])
		}
		return vault.OpenLocalKeyring(*keyring)
	}
	switch args[0] {
	case "encrypt", "decrypt":
		if fs.NArg() != 2 {
			return fmt.Errorf("usage: vaultfile %s -keyring KEYRING IN OUT", args[0])
		}
		kp, err := openKeyring()
		if err != nil {
			return err
		}
		if args[0] == "encrypt" {
			_, err = vaultfile.EncryptFile(ctx, kp, fs.Arg(0), fs.Arg(1))
		} else {
			_, err = vaultfile.DecryptFile(ctx, kp, fs.Arg(0), fs.Arg(1))
		}
		return err
	case "stream":
		var res vaultfile.StreamResult
		switch *tool {
		case "rampart":
			kp, err := openKeyring()
			if err != nil {
				return err
			}
			if res, err = vaultfile.StreamRampart(ctx, kp, *size); err != nil {
				return err
			}
		case "age":
			id, err := vaultfile.ReadAgeIdentity(*identity)
			if err != nil {
				return err
			}
			if res, err = vaultfile.StreamAge(id.Recipient(), id, *size); err != nil {
				return err
			}
		default:
			return fmt.Errorf("-tool %q: want rampart or age", *tool)
		}
		return json.NewEncoder(os.Stdout).Encode(res)
	}
	return fmt.Errorf("unknown command %q: want encrypt, decrypt or stream", args[0])
}
