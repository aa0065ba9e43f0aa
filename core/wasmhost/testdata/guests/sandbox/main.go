// Command sandbox probes what the host grants: its init reads the file
// and the environment variable named in its config and rejects the config
// with the error if it cannot.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	weir "github.com/weir-flow/weir/sdk/wasm"
)

func init() {
	weir.RegisterInit(func(config []byte) error {
		var cfg struct {
			File string `json:"file"`
			Env  string `json:"env"`
		}
		if err := json.Unmarshal(config, &cfg); err != nil {
			return err
		}
		if cfg.File != "" {
			if _, err := os.ReadFile(cfg.File); err != nil {
				return fmt.Errorf("sandbox: %w", err)
			}
		}
		if cfg.Env != "" {
			if _, ok := os.LookupEnv(cfg.Env); !ok {
				return fmt.Errorf("sandbox: $%s is not set", cfg.Env)
			}
		}
		return nil
	})
	weir.RegisterFilter(func(*weir.Record) bool { return true }, weir.Reads())
}

func main() {}
