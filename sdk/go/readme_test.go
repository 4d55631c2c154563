package payrail

import (
	"os"
	"strings"
	"testing"
)

// The README's complete gateway is examples/minimal/main.go, which `go vet ./...` and
// `go build ./...` compile: the two must not drift apart.
func TestReadmeShowsTheBuiltExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("examples/minimal/main.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```go\n"+string(example)+"```") {
		t.Fatal("README.md does not show examples/minimal/main.go as it is")
	}
}
