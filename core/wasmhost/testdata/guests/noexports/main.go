// Command noexports is a WASM reactor without Weir's exports.
package main

func main() {}
