package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newValidateCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check a pipeline config without starting it",
		Long: `Decode and validate a config: unknown keys, unknown plugin IDs, wrong types and invalid values
are reported with their path (e.g. pipeline.processors[0].filter.protocol.protocols).
WASM modules and RPC plugins are loaded and initialised with their config, then stopped.
Exits non-zero when anything is wrong.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(path)
			if err != nil {
				return err
			}
			if err := cfg.Check(cmd.Context()); err != nil {
				return err
			}
			name := path
			if name == "" {
				name = "embedded default config"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d sources, %d processors, %d exporters)\n", name,
				len(cfg.Pipeline.Sources), len(cfg.Pipeline.Processors), len(cfg.Pipeline.Exporters))
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "pipeline config file (YAML); default: the embedded one")
	return cmd
}
