// Command gen writes weir.lua (see package wireshark): go generate
// ./deploy/wireshark.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/weir-flow/weir/deploy/wireshark"
)

func main() {
	out := flag.String("o", "weir.lua", "file to write")
	flag.Parse()
	if err := os.WriteFile(*out, wireshark.Lua(), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}
