/**
 * gRPC health (`grpc.health.v1.Health/Check`) on the sandbox's port, served by
 * connect-node over plaintext HTTP/2, so payrail's supervisor, tests and any gRPC
 * health client can ask. `""` (the process) is SERVING once the worker consumes;
 * `payrail.dependency.payrail` is NOT_SERVING while the worker waits for payrail or
 * Kafka to come back.
 */

import * as http2 from "node:http2";

import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";

import { Health, HealthCheckResponseSchema, HealthCheckResponse_ServingStatus as Status } from "./gen/grpc/health/v1/health_pb.js";

export const DEPENDENCY_SERVICE = "payrail.dependency.payrail";

export interface HealthState {
  readonly consuming: boolean;
  readonly waiting: boolean;
}

export function statusOf(service: string, state: HealthState): Status {
  if (service === "") return state.consuming ? Status.SERVING : Status.NOT_SERVING;
  if (service === DEPENDENCY_SERVICE) return state.waiting ? Status.NOT_SERVING : Status.SERVING;
  throw new ConnectError("unknown service", Code.NotFound);
}

export function healthRoutes(state: () => HealthState): (router: ConnectRouter) => void {
  return (router) => {
    router.service(Health, {
      check(request) {
        return create(HealthCheckResponseSchema, { status: statusOf(request.service, state()) });
      },
    });
  };
}

/** Listen on 127.0.0.1:`port`; resolves with the server once it listens. */
export async function serveHealth(port: number, state: () => HealthState): Promise<http2.Http2Server> {
  const server = http2.createServer(connectNodeAdapter({ routes: healthRoutes(state) }));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  return server;
}
