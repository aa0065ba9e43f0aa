package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/weir-flow/weir/core/plugin"
)

func newPluginsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plugins",
		Short: "List, scaffold and inspect plugins",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tSTAGE\tSUMMARY")
			for _, info := range plugin.All() {
				fmt.Fprintf(w, "%s\t%s\t%s\n", info.ID, info.Stage(), info.Summary)
			}
			return w.Flush()
		},
	}
	cmd.AddCommand(newPluginsNewCmd(), newPluginsInspectCmd())
	return cmd
}
