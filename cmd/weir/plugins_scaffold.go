// (Not plugins_wasm.go: a _wasm.go suffix restricts a file to GOARCH=wasm.)

package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/weir-flow/weir/core/wasmhost"
	"github.com/weir-flow/weir/internal/scaffold"
)

// newPluginsNewCmd is `weir plugins new --kind K --name N [--dir D]`.
func newPluginsNewCmd() *cobra.Command {
	var kind, name, dir string
	cmd := &cobra.Command{
		Use:   "new",
		Short: "Create a plugin folder that builds as-is (kinds: " + strings.Join(scaffold.Kinds(), ", ") + ")",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				dir = name
			}
			if err := scaffold.New(kind, name, dir); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created %s plugin %s in %s\n", kind, name, dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&kind, "kind", "wasm", "plugin kind: "+strings.Join(scaffold.Kinds(), ", "))
	cmd.Flags().StringVar(&name, "name", "", "plugin name (lowercase letters, digits, underscores)")
	cmd.Flags().StringVar(&dir, "dir", "", "directory to create (default ./<name>)")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

// newPluginsInspectCmd is `weir plugins inspect X.wasm`: it prints the
// module's ABI version, kind and exports, and fails on a module that is
// not a Weir plugin.
func newPluginsInspectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect MODULE.wasm",
		Short: "Print a WASM plugin's ABI version, kind and exports",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, _ := filepath.Abs(args[0])
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			info, err := wasmhost.Inspect(ctx, path)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "path:        %s\n", args[0])
			fmt.Fprintf(w, "abi version: %d\n", info.ABIVersion)
			fmt.Fprintf(w, "kind:        %s\n", info.Kind)
			fmt.Fprintf(w, "exports:     %s\n", strings.Join(info.Exports, ", "))
			fmt.Fprintf(w, "imports:     %s\n", strings.Join(info.Imports, ", "))
			return nil
		},
	}
}
