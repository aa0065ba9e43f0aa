package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/weir-flow/weir/core/config"
)

func newReloadCmd() *cobra.Command {
	var path, address string
	cmd := &cobra.Command{
		Use:   "reload [-c] [FILE]",
		Short: "Ask a running weir to reload its config (as SIGHUP does)",
		Long: `Ask the weir running FILE (or --address) to reload its config, through its admin endpoint
(POST /-/reload on telemetry.metrics_address, accepted from loopback only), and print what changed.
Exits non-zero if the new config was refused; the running pipeline is then unchanged.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := configArg(path, args)
			if err != nil {
				return err
			}
			if address == "" {
				tel := config.Defaults().Telemetry
				if p == "" {
					cfg, err := loadConfig(p)
					if err != nil {
						return err
					}
					tel = cfg.Telemetry
				} else if tel, err = config.ReadTelemetry(p); err != nil {
					return fmt.Errorf("find the admin address: %w", err)
				}
				if address = tel.MetricsAddress; address == "" {
					return fmt.Errorf("telemetry.metrics_address is empty: the running weir has no admin endpoint (send it SIGHUP instead)")
				}
			}
			target, err := loopbackTarget(address)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+target+"/-/reload", nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("reload: %w", err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s", strings.TrimSpace(string(body)))
			}
			fmt.Fprint(cmd.OutOrStdout(), string(body))
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "the running weir's config file, to read telemetry.metrics_address from")
	cmd.Flags().StringVar(&address, "address", "", "admin address host:port (default: telemetry.metrics_address of the config)")
	return cmd
}

// loopbackTarget turns a listen address into one to dial: an empty or
// unspecified host becomes the loopback address.
func loopbackTarget(address string) (string, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return "", fmt.Errorf("admin address %q: %w", address, err)
	}
	if host == "" {
		host = "127.0.0.1"
	} else if a, err := netip.ParseAddr(host); err == nil && a.IsUnspecified() {
		host = "127.0.0.1"
		if a.Is6() {
			host = "::1"
		}
	}
	return net.JoinHostPort(host, port), nil
}
