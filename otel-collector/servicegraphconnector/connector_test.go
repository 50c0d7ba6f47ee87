package servicegraphconnector

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"

	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"
)

var traceID = pcommon.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}

// spanSpec describes one span of a test trace.
type spanSpec struct {
	service      string
	kind         ptrace.SpanKind
	id, parent   byte
	milliseconds int
	failed       bool
	attrs        map[string]string
}

func traces(specs ...spanSpec) ptrace.Traces {
	td := ptrace.NewTraces()
	start := pcommon.NewTimestampFromTime(time.Unix(1_700_000_000, 0))
	for _, s := range specs {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", s.service)
		span := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
		span.SetTraceID(traceID)
		span.SetSpanID(pcommon.SpanID{s.id})
		if s.parent != 0 {
			span.SetParentSpanID(pcommon.SpanID{s.parent})
		}
		span.SetKind(s.kind)
		span.SetStartTimestamp(start)
		span.SetEndTimestamp(start + pcommon.Timestamp(time.Duration(s.milliseconds)*time.Millisecond))
		if s.failed {
			span.Status().SetCode(ptrace.StatusCodeError)
		}
		for k, v := range s.attrs {
			span.Attributes().PutStr(k, v)
		}
	}
	return td
}

// harness is a started connector with a fake clock and a metrics sink.
type harness struct {
	t    *testing.T
	c    *serviceGraphConnector
	sink *consumertest.MetricsSink
	now  time.Time
}

func newHarness(t *testing.T, cfg *Config) *harness {
	t.Helper()
	zero := time.Duration(0)
	if cfg.MetricsFlushInterval == nil {
		cfg.MetricsFlushInterval = &zero // flush after every batch: deterministic tests
	}
	h := &harness{t: t, sink: new(consumertest.MetricsSink), now: time.Unix(1_700_000_000, 0)}
	h.c = newConnector(zap.NewNop(), cfg, h.sink)
	h.c.now = func() time.Time { return h.now }
	cfg.StoreExpirationLoop = 0 // the test drives expiry
	if err := h.c.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.c.Shutdown(context.Background()) })
	return h
}

func (h *harness) consume(specs ...spanSpec) {
	h.t.Helper()
	if err := h.c.ConsumeTraces(context.Background(), traces(specs...)); err != nil {
		h.t.Fatal(err)
	}
}

// expireAfter advances the clock and sweeps the store, then flushes.
func (h *harness) expireAfter(d time.Duration) {
	h.t.Helper()
	h.now = h.now.Add(d)
	h.c.expire(h.now)
	if err := h.c.flush(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

// point is one data point as "metric{k=v,...}" -> value (count for histograms).
func (h *harness) lastPoints() map[string]float64 {
	h.t.Helper()
	all := h.sink.AllMetrics()
	if len(all) == 0 {
		h.t.Fatal("no metrics were sent")
	}
	out := map[string]float64{}
	ms := all[len(all)-1].ResourceMetrics().At(0).ScopeMetrics().At(0)
	if got := ms.Scope().Name(); got != scopeName {
		h.t.Errorf("scope name %q, want %q", got, scopeName)
	}
	for i := 0; i < ms.Metrics().Len(); i++ {
		m := ms.Metrics().At(i)
		switch m.Type() {
		case pmetric.MetricTypeSum:
			for j := 0; j < m.Sum().DataPoints().Len(); j++ {
				dp := m.Sum().DataPoints().At(j)
				out[m.Name()+labels(dp.Attributes())] = float64(dp.IntValue())
			}
		case pmetric.MetricTypeHistogram:
			if m.Unit() != "s" {
				h.t.Errorf("%s unit %q, want s", m.Name(), m.Unit())
			}
			for j := 0; j < m.Histogram().DataPoints().Len(); j++ {
				dp := m.Histogram().DataPoints().At(j)
				out[m.Name()+labels(dp.Attributes())] = float64(dp.Count())
				out[m.Name()+"_sum"+labels(dp.Attributes())] = dp.Sum()
			}
		}
	}
	return out
}

func labels(m pcommon.Map) string {
	var parts []string
	m.Range(func(k string, v pcommon.Value) bool {
		parts = append(parts, k+"="+v.AsString())
		return true
	})
	sort.Strings(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

func wantPoints(t *testing.T, got map[string]float64, want map[string]float64) {
	t.Helper()
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v\nall: %v", k, g, ok, v, got)
		}
	}
}

func defaultConfig() *Config { return createDefaultConfig().(*Config) }

func TestClientAndServerSpansMakeOneEdge(t *testing.T) {
	h := newHarness(t, defaultConfig())
	// The server span may arrive first: pairing works in either order.
	h.consume(spanSpec{service: "chat", kind: ptrace.SpanKindServer, id: 2, parent: 1, milliseconds: 30})
	if h.sink.DataPointCount() != 0 {
		t.Fatalf("metrics before the edge was complete: %d points", h.sink.DataPointCount())
	}
	h.consume(spanSpec{service: "gateway", kind: ptrace.SpanKindClient, id: 1, parent: 9, milliseconds: 50})

	edge := "{client=gateway,connection_type=,failed=false,server=chat}"
	wantPoints(t, h.lastPoints(), map[string]float64{
		metricRequests + edge:            1,
		metricServerTime + edge:          1,
		metricServerTime + "_sum" + edge: 0.03,
		metricClientTime + "_sum" + edge: 0.05,
	})
	if len(h.c.edges) != 0 {
		t.Errorf("completed edge still stored: %d", len(h.c.edges))
	}
}

func TestFailedRequestCountsAndLabels(t *testing.T) {
	h := newHarness(t, defaultConfig())
	h.consume(
		spanSpec{service: "gateway", kind: ptrace.SpanKindClient, id: 1, milliseconds: 5},
		spanSpec{service: "chat", kind: ptrace.SpanKindServer, id: 2, parent: 1, milliseconds: 4, failed: true},
	)
	edge := "{client=gateway,connection_type=,failed=true,server=chat}"
	wantPoints(t, h.lastPoints(), map[string]float64{metricRequests + edge: 1, metricFailed + edge: 1})
}

func TestDatabaseClientSpanIsAnEdgeAtOnce(t *testing.T) {
	cfg := defaultConfig()
	cfg.DatabaseNameAttributes = []string{"db.system.name", "db.system"}
	h := newHarness(t, cfg)
	h.consume(spanSpec{service: "cache", kind: ptrace.SpanKindClient, id: 3, parent: 2, milliseconds: 1,
		attrs: map[string]string{"db.system": "redis", "server.address": "localhost"}})
	wantPoints(t, h.lastPoints(), map[string]float64{
		metricRequests + "{client=cache,connection_type=database,failed=false,server=redis}": 1,
	})
}

func TestVirtualNodes(t *testing.T) {
	cfg := defaultConfig()
	cfg.Store.TTL = 10 * time.Second
	cfg.VirtualNodePeerAttributes = []string{"peer.service", "db.system", "server.address"}
	cfg.VirtualNodeExtraLabel = true
	h := newHarness(t, cfg)
	h.consume(
		// A call to something uninstrumented: db.system outranks server.address.
		spanSpec{service: "cache", kind: ptrace.SpanKindClient, id: 3, parent: 2, milliseconds: 1,
			attrs: map[string]string{"db.system": "redis", "server.address": "localhost"}},
		// The root server span: its caller is the user.
		spanSpec{service: "gateway", kind: ptrace.SpanKindServer, id: 8, milliseconds: 9},
		// A client span with nothing to name its peer by is dropped.
		spanSpec{service: "chat", kind: ptrace.SpanKindClient, id: 4, milliseconds: 1},
	)
	if h.sink.DataPointCount() != 0 {
		t.Fatal("virtual edges recorded before store.ttl")
	}
	h.expireAfter(5 * time.Second)
	if h.sink.DataPointCount() != 0 || len(h.c.edges) != 3 {
		t.Fatalf("edges expired early: %d points, %d stored", h.sink.DataPointCount(), len(h.c.edges))
	}
	h.expireAfter(5 * time.Second)
	got := h.lastPoints()
	wantPoints(t, got, map[string]float64{
		metricRequests + "{client=cache,connection_type=virtual_node,failed=false,server=redis,virtual_node=server}":  1,
		metricRequests + "{client=user,connection_type=virtual_node,failed=false,server=gateway,virtual_node=client}": 1,
	})
	if n := len(got); n != 2*5 { // two edges x (total, 2 histogram counts, 2 histogram sums)
		t.Errorf("want only the two virtual edges, got %v", got)
	}
	if len(h.c.edges) != 0 {
		t.Errorf("%d edges left after expiry", len(h.c.edges))
	}
}

func TestDimensionsArePrefixedBySide(t *testing.T) {
	cfg := defaultConfig()
	cfg.Dimensions = []string{"deployment.environment.name"}
	h := newHarness(t, cfg)
	h.consume(
		spanSpec{service: "gateway", kind: ptrace.SpanKindClient, id: 1, milliseconds: 5,
			attrs: map[string]string{"deployment.environment.name": "dev"}},
		spanSpec{service: "chat", kind: ptrace.SpanKindServer, id: 2, parent: 1, milliseconds: 4},
	)
	wantPoints(t, h.lastPoints(), map[string]float64{
		metricRequests + "{client=gateway,client_deployment.environment.name=dev,connection_type=,failed=false,server=chat}": 1,
	})
}

func TestFullStoreDropsNewEdges(t *testing.T) {
	cfg := defaultConfig()
	cfg.Store.MaxItems = 1
	h := newHarness(t, cfg)
	h.consume(
		spanSpec{service: "gateway", kind: ptrace.SpanKindClient, id: 1, milliseconds: 1},
		spanSpec{service: "gateway", kind: ptrace.SpanKindClient, id: 5, milliseconds: 1},
	)
	if len(h.c.edges) != 1 {
		t.Fatalf("store holds %d edges, want max_items=1", len(h.c.edges))
	}
}

func TestIdleSeriesAreDroppedAfterFifteenMinutes(t *testing.T) {
	h := newHarness(t, defaultConfig())
	edge := func(client string, id byte) {
		h.consume(
			spanSpec{service: client, kind: ptrace.SpanKindClient, id: id, milliseconds: 2},
			spanSpec{service: "chat", kind: ptrace.SpanKindServer, id: id + 1, parent: id, milliseconds: 1},
		)
	}
	edge("gateway", 1)
	edge("one-off", 3)
	h.now = h.now.Add(10 * time.Minute)
	edge("gateway", 5) // still in use
	h.now = h.now.Add(6 * time.Minute)
	h.c.dropIdleSeries(h.now)
	edge("gateway", 7)
	got := h.lastPoints()
	wantPoints(t, got, map[string]float64{
		metricRequests + "{client=gateway,connection_type=,failed=false,server=chat}": 3,
	})
	if n := len(got); n != 5 { // one edge x (total, 2 histogram counts, 2 histogram sums)
		t.Errorf("the idle series is still sent: %v", got)
	}
}

func TestHistogramBuckets(t *testing.T) {
	var hist histogram
	bounds := []float64{0.1, 1}
	for _, v := range []float64{0.05, 0.1, 0.5, 2} {
		hist.record(bounds, v)
	}
	if got := hist.counts; len(got) != 3 || got[0] != 2 || got[1] != 1 || got[2] != 1 {
		t.Errorf("bucket counts %v, want [2 1 1] (upper bounds inclusive)", got)
	}
}

func TestConfigUnmarshalIsStrictAndValidated(t *testing.T) {
	load := func(raw map[string]any) (*Config, error) {
		cfg := defaultConfig()
		if err := confmap.NewFromStringMap(raw).Unmarshal(cfg); err != nil {
			return nil, err
		}
		return cfg, confmap.Validate(cfg)
	}
	cfg, err := load(map[string]any{
		"latency_histogram_buckets":    []any{"5ms", "1s"},
		"store":                        map[string]any{"ttl": "10s", "max_items": 500},
		"metrics_flush_interval":       "5s",
		"virtual_node_peer_attributes": []any{"db.system"},
		"database_name_attributes":     []any{"db.system.name", "db.system"},
		"cache_loop":                   "30s",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.TTL != 10*time.Second || cfg.Store.MaxItems != 500 || *cfg.MetricsFlushInterval != 5*time.Second ||
		len(cfg.LatencyHistogramBuckets) != 2 || cfg.StoreExpirationLoop != 2*time.Second ||
		cfg.CacheLoop != 30*time.Second {
		t.Errorf("unexpected config %+v", cfg)
	}
	if _, err := load(map[string]any{"exponential_histogram_max_size": 160}); err == nil {
		t.Error("an unimplemented contrib key was accepted")
	}
	if _, err := load(map[string]any{"cache_loop": "-1s"}); err == nil {
		t.Error("a negative cache_loop was accepted")
	}
	if _, err := load(map[string]any{"store": map[string]any{"ttl": "0s"}}); err == nil {
		t.Error("store.ttl 0 was accepted")
	}
	if _, err := load(map[string]any{"latency_histogram_buckets": []any{"1s", "5ms"}}); err == nil {
		t.Error("decreasing buckets were accepted")
	}
}

func TestFactory(t *testing.T) {
	f := NewFactory()
	if f.Type() != component.MustNewType("servicegraph") {
		t.Errorf("type %s", f.Type())
	}
	if err := componenttest.CheckConfigStruct(f.CreateDefaultConfig()); err != nil {
		t.Error(err)
	}
	c, err := f.CreateTracesToMetrics(context.Background(), connectortest.NewNopSettings(f.Type()),
		f.CreateDefaultConfig(), consumertest.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	if err := c.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}
