// A complete minimal payrail gateway: approves every payment except one test card.
package main

import (
	"context"
	"encoding/base64"
	"os"
	"os/signal"
	"strings"
	"syscall"

	payrail "github.com/payrail/payrail/sdk/go"
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err) // setup only: a gateway that cannot start should say why and stop
	}
	return v
}

// readKey reads a base64 key file, as `python -m sandbox_gateways.keys` writes them.
func readKey(path string) []byte {
	return must(base64.StdEncoding.DecodeString(strings.TrimSpace(string(must(os.ReadFile(path))))))
}

func main() {
	secret := must(payrail.NewSecret(readKey("keys/my-gateway.secret")))
	conn := must(payrail.Dial("127.0.0.1:50051")) // payrail's gateway_svc
	client := must(payrail.NewCallbackClient(conn, "my-gateway", payrail.JSON, []payrail.Secret{secret}, payrail.ClientOptions{}))
	worker := must(payrail.NewWorker(payrail.WorkerConfig{
		GatewayID: "my-gateway", Brokers: []string{"127.0.0.1:9092"}, Format: payrail.JSON, Client: client,
		PrivateKey: must(payrail.LoadPrivateKey(readKey("keys/my-gateway.x25519"))),
		Handler: payrail.HandlerFunc(func(ctx context.Context, req *payrail.Request, card *payrail.Card) (*payrail.Outcome, error) {
			if card != nil && card.Number() == "4000000000000002" {
				return payrail.Decline("card_declined", "the card was declined"), nil
			}
			return payrail.Approve("my-" + req.RequestID), nil
		}),
	}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	_ = worker.Run(ctx) // until SIGTERM; then finishes in-flight reports and returns
}
