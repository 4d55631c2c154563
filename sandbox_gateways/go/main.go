// Command payrail-sandbox-go is payrail's Go sandbox gateway: the Go SDK's worker plus
// the test-card behaviour of the Python sandboxes (sandbox_gateways/gateway.py) and a
// gRPC health port. Gateway id sandbox-go, wire format protobuf.
//
// Environment (the Python sandboxes' variables, plus its own port):
//
//	PAYRAIL_SANDBOX_KEYS_DIR    key files <dir>/sandbox-go.x25519 and .secret (.data/keys)
//	PAYRAIL_KAFKA_BOOTSTRAP     Kafka bootstrap servers, comma separated (127.0.0.1:9092)
//	PAYRAIL_CALLBACK_TARGET     gateway_svc's gRPC address, plaintext (127.0.0.1:50051)
//	PAYRAIL_SANDBOX_LATENCY_MS  pause before each decision, ms (20)
//	PAYRAIL_SANDBOX_LINGER_MS   how long a result waits for others to share its call, ms (5)
//	PAYRAIL_SANDBOX_BATCH_MAX   results per ReportResults call, 1 to 500 (100)
//	PAYRAIL_LOG_LEVEL           DEBUG, INFO, WARNING or ERROR (INFO)
//	PAYRAIL_SANDBOX_GO_PORT     gRPC health port on 127.0.0.1 (50063)
package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	payrail "github.com/payrail/payrail/sdk/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

const (
	gatewayID = "sandbox-go"
	format    = "protobuf"
	// dependencyService is NOT_SERVING while the worker waits for payrail or Kafka.
	dependencyService = "payrail.dependency.payrail"
	healthInterval    = time.Second
)

// Test cards, as in the Python sandboxes.
const (
	approveCard     = "4242424242424242"
	neverAnswerCard = "4000000000000119"
)

var declines = map[string][2]string{
	"4000000000000002": {"card_declined", "the card was declined"},
	"4000000000009995": {"insufficient_funds", "the card has insufficient funds"},
}

type settings struct {
	keysDir        string
	brokers        []string
	callbackTarget string
	latency        time.Duration
	linger         time.Duration
	batchMax       int
	port           int
	logLevel       slog.Level
}

func env(name, fallback string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return fallback
}

func envInt(name string, fallback, minimum, maximum int) (int, error) {
	text := env(name, strconv.Itoa(fallback))
	n, err := strconv.Atoi(text)
	if err != nil || n < minimum || n > maximum {
		return 0, fmt.Errorf("%s is an integer from %d to %d", name, minimum, maximum)
	}
	return n, nil
}

func load() (settings, error) {
	s := settings{
		keysDir:        env("PAYRAIL_SANDBOX_KEYS_DIR", ".data/keys"),
		callbackTarget: env("PAYRAIL_CALLBACK_TARGET", "127.0.0.1:50051"),
		logLevel:       payrail.ParseLogLevel(env("PAYRAIL_LOG_LEVEL", "INFO")),
	}
	for _, b := range strings.Split(env("PAYRAIL_KAFKA_BOOTSTRAP", "127.0.0.1:9092"), ",") {
		if b = strings.TrimSpace(b); b != "" {
			s.brokers = append(s.brokers, b)
		}
	}
	latencyMs, err := envInt("PAYRAIL_SANDBOX_LATENCY_MS", 20, 0, 60_000)
	if err != nil {
		return s, err
	}
	lingerMs, err := envInt("PAYRAIL_SANDBOX_LINGER_MS", 5, 0, 1000)
	if err != nil {
		return s, err
	}
	if s.batchMax, err = envInt("PAYRAIL_SANDBOX_BATCH_MAX", 100, 1, payrail.BatchResultsMax); err != nil {
		return s, err
	}
	if s.port, err = envInt("PAYRAIL_SANDBOX_GO_PORT", 50063, 1, 65535); err != nil {
		return s, err
	}
	s.latency = time.Duration(latencyMs) * time.Millisecond
	s.linger = time.Duration(lingerMs) * time.Millisecond
	if lingerMs == 0 {
		s.linger = -1 // BatcherOptions: negative is "no linger", zero the default
	}
	return s, nil
}

func readBase64File(path string) ([]byte, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(text)))
	if err != nil {
		return nil, fmt.Errorf("%s does not hold base64", path)
	}
	return raw, nil
}

// decide is the test-card behaviour; wallet-funded purchases (no card) are approved.
func decide(req *payrail.Request, card *payrail.Card) *payrail.Outcome {
	number := ""
	if card != nil {
		number = card.Number()
	}
	if number == neverAnswerCard {
		return nil
	}
	if d, ok := declines[number]; ok {
		return payrail.Decline(d[0], d[1])
	}
	return payrail.Approve("sbx_" + req.RequestID)
}

func main() {
	if err := run(); err != nil {
		slog.Error("sandbox gateway stopped", "error", err.Error())
		os.Exit(1)
	}
}

func run() error {
	s, err := load()
	level := slog.LevelInfo
	if err == nil {
		level = s.logLevel
	}
	log := slog.New(payrail.NewLogHandler(os.Stderr, level, gatewayID))
	slog.SetDefault(log)
	if err != nil {
		return err
	}
	rawKey, err := readBase64File(filepath.Join(s.keysDir, gatewayID+".x25519"))
	if err != nil {
		return err
	}
	key, err := payrail.LoadPrivateKey(rawKey)
	if err != nil {
		return err
	}
	rawSecret, err := readBase64File(filepath.Join(s.keysDir, gatewayID+".secret"))
	if err != nil {
		return err
	}
	secret, err := payrail.NewSecret(rawSecret)
	if err != nil {
		return err
	}
	wire, _ := payrail.FormatByName(format)

	conn, err := payrail.Dial(s.callbackTarget)
	if err != nil {
		return err
	}
	defer conn.Close()
	client, err := payrail.NewCallbackClient(conn, gatewayID, wire, []payrail.Secret{secret}, payrail.ClientOptions{Logger: log})
	if err != nil {
		return err
	}
	handler := payrail.HandlerFunc(func(ctx context.Context, req *payrail.Request, card *payrail.Card) (*payrail.Outcome, error) {
		select {
		case <-time.After(s.latency):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if card != nil {
			// What was opened, without the number: lets a test check that the card
			// opened is the card the payment was created with.
			log.Info("card opened", "payment_id", req.PaymentID, "masked_number", card.MaskedNumber(),
				"exp_month", card.ExpMonth(), "exp_year", card.ExpYear(), "has_cvc", card.CVC() != "")
		}
		return decide(req, card), nil
	})
	worker, err := payrail.NewWorker(payrail.WorkerConfig{
		GatewayID:  gatewayID,
		Brokers:    s.brokers,
		Format:     wire,
		PrivateKey: key,
		Client:     client,
		Handler:    handler,
		Batcher:    payrail.BatcherOptions{Linger: s.linger, BatchMax: s.batchMax},
		Logger:     log,
	})
	if err != nil {
		return err
	}

	listener, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)))
	if err != nil {
		return err
	}
	server := grpc.NewServer()
	healthServer := health.NewServer()
	healthServer.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthServer.SetServingStatus(dependencyService, healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(server, healthServer)
	go func() {
		if err := server.Serve(listener); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			log.Error("health server stopped", "error", err.Error())
		}
	}()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	workerDone := make(chan error, 1)
	go func() { workerDone <- worker.Run(ctx) }()
	log.Info("sandbox gateway consuming", "gateway_id", gatewayID, "format", format, "port", s.port)

	ticker := time.NewTicker(healthInterval)
	defer ticker.Stop()
	for {
		mirrorHealth(healthServer, worker)
		select {
		case err := <-workerDone:
			healthServer.Shutdown()
			server.GracefulStop()
			if err != nil {
				return err
			}
			log.Info("sandbox gateway stopped")
			return nil
		case <-ticker.C:
		}
	}
}

// mirrorHealth: overall SERVING once consuming; the dependency NOT_SERVING while the
// worker waits for payrail or Kafka.
func mirrorHealth(h *health.Server, w *payrail.Worker) {
	overall := healthpb.HealthCheckResponse_NOT_SERVING
	if w.Consuming() {
		overall = healthpb.HealthCheckResponse_SERVING
	}
	h.SetServingStatus("", overall)
	dependency := healthpb.HealthCheckResponse_SERVING
	if w.Waiting() || !w.Consuming() {
		dependency = healthpb.HealthCheckResponse_NOT_SERVING
	}
	h.SetServingStatus(dependencyService, dependency)
}
