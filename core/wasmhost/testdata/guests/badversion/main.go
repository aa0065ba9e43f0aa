// Command badversion exports ABI version 99, and nothing else of the ABI.
package main

func main() {}
