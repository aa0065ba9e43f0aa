package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// configArg returns the config file given as -c FILE or as the one
// positional argument ("" for the embedded default); both at once must
// agree.
func configArg(flag string, args []string) (string, error) {
	switch {
	case len(args) == 0:
		return flag, nil
	case len(args) > 1:
		return "", fmt.Errorf("want at most one config file, got %d arguments: %s", len(args), strings.Join(args, " "))
	case flag != "" && flag != args[0]:
		return "", fmt.Errorf("two config files: -c %s and %s", flag, args[0])
	}
	return args[0], nil
}

func newValidateCmd() *cobra.Command {
	var (
		path   string
		strict bool
	)
	cmd := &cobra.Command{
		Use:   "validate [-c] [FILE]",
		Short: "Check a pipeline config without starting it",
		Long: `Decode and validate a config as 'weir run' would before starting: unknown keys, unknown plugin IDs,
wrong types and invalid values are reported with their path (e.g. pipeline.processors[0].filter.protocol.protocols);
a pipeline without a source or an exporter, files that do not exist, WASM modules and RPC plugins that do not
load (they are loaded and initialised with their config, then stopped) are refused too. Listen addresses are not
bound, so a running Weir's config validates.
Warnings (entries a plugin ignores) are printed; --strict makes them errors.
Exits non-zero when anything is wrong.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := configArg(path, args)
			if err != nil {
				return err
			}
			cfg, err := loadConfig(p)
			if err != nil {
				return err
			}
			if err := cfg.CheckRun(cmd.Context()); err != nil {
				return err
			}
			warnings := cfg.Warnings()
			for _, w := range warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
			}
			if strict && len(warnings) > 0 {
				return errors.New("--strict: the config has warnings")
			}
			name := p
			if name == "" {
				name = "embedded default config"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d sources, %d processors, %d exporters)\n", name,
				len(cfg.Pipeline.Sources), len(cfg.Pipeline.Processors), len(cfg.Pipeline.Exporters))
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "pipeline config file (YAML); default: the embedded one")
	cmd.Flags().BoolVar(&strict, "strict", false, "treat warnings as errors")
	return cmd
}
