// Package servicegraphconnector is a small, config-compatible stand-in for the contrib
// Collector's servicegraph connector, built into this project's native Collector.
//
// Why it exists: the Go module proxy reachable from the project's machines does not serve
// github.com/open-telemetry/opentelemetry-collector-contrib/connector/servicegraphconnector
// (every version answers 403), so OCB cannot build it. The Docker stack runs the official
// otel/opentelemetry-collector-contrib image, which has the real connector under the same
// type name, servicegraph, so otel-collector/config.yaml is the same file in both places.
// (A rename to service_graph was reported but could not be confirmed; contrib keeps old
// names as deprecated aliases when it renames, so servicegraph loads either way.)
//
// What it does, as contrib does: it pairs a CLIENT (or PRODUCER) span with the SERVER (or
// CONSUMER) span whose parent it is, and records one edge per pair as
//
//	traces_service_graph_request_total{client, server, connection_type, failed}
//	traces_service_graph_request_failed_total{...}
//	traces_service_graph_request_client / _server   (histograms, unit s)
//
// A client span carrying one of database_name_attributes (e.g. db.system=redis) is an edge
// by itself (connection_type "database"). An edge whose other half never arrives within
// store.ttl becomes a virtual-node edge (connection_type "virtual_node"): a client span
// names its server by virtual_node_peer_attributes, a root server span gets client "user".
//
// Series that no edge updated for 15 minutes are dropped at each cache_loop, as contrib
// does, so one-off edges do not stay in the output for good.
//
// One difference: contrib records a lone client span with no peer attribute at all as
// an edge to the virtual node "unknown"; this stand-in drops it.
//
// Not implemented (rejected if configured): exponential histograms,
// metrics_timestamp_offset, the connector's own telemetry metrics, and the
// unpaired/dropped span counters.
package servicegraphconnector

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/connector/xconnector"
	"go.opentelemetry.io/collector/consumer"
)

// Contrib's type name for the connector.
var componentType = component.MustNewType("servicegraph")

// NewFactory returns the connector factory (traces in, metrics out).
func NewFactory() connector.Factory {
	return xconnector.NewFactory(
		componentType,
		createDefaultConfig,
		xconnector.WithTracesToMetrics(createTracesToMetrics, component.StabilityLevelAlpha),
	)
}

func createDefaultConfig() component.Config {
	return &Config{
		Store:               StoreConfig{TTL: 2 * time.Second, MaxItems: 1000},
		StoreExpirationLoop: 2 * time.Second,
	}
}

func createTracesToMetrics(_ context.Context, set connector.Settings, cfg component.Config, next consumer.Metrics) (connector.Traces, error) {
	return newConnector(set.Logger, cfg.(*Config), next), nil
}
