//go:build !amd64

// Command isapeak measures amd64 multiply-add instruction rates; on other
// architectures it only says so.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "isapeak: amd64 only")
	os.Exit(1)
}
