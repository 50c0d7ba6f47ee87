// Browser tracing for the chat page, with the official OpenTelemetry JS web packages.
//
// - document load: the page's own load (documentLoad, documentFetch, resourceFetch spans);
// - fetch: one client span per API call, and `traceparent` on calls to this page's own
//   origin only (the gateway continues the trace; nothing is sent to other origins);
// - user interaction: a span for each click on the send button (the root of a chat's trace).
//
// Spans go to the gateway's first-party OTLP/HTTP path (/otlp/v1/traces), which checks
// the API key and relays them to the Collector: the Collector is never exposed to the
// browser and the page needs no CORS. No request header is ever recorded, so the API
// key is in no span.

import { trace } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { registerInstrumentations } from "@opentelemetry/instrumentation";
import { DocumentLoadInstrumentation } from "@opentelemetry/instrumentation-document-load";
import { FetchInstrumentation } from "@opentelemetry/instrumentation-fetch";
import { UserInteractionInstrumentation } from "@opentelemetry/instrumentation-user-interaction";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, WebTracerProvider } from "@opentelemetry/sdk-trace-web";

export const SERVICE_NAME = "chat-web";
export const OTLP_PATH = "/otlp/v1/traces";

/**
 * Start tracing. Call it before the page adds its event listeners (user-interaction
 * instruments listeners added after it) and before its first fetch.
 *
 * @param {() => string | null} apiKey read at each export, never stored here
 * @returns {import("@opentelemetry/api").Tracer} for the page's own spans
 */
export function startTelemetry(apiKey) {
  const exporter = new OTLPTraceExporter({
    url: new URL(OTLP_PATH, window.location.origin).href,
    headers: () => ({ "X-API-Key": apiKey() ?? "" }),
  });
  const provider = new WebTracerProvider({
    resource: resourceFromAttributes({
      "service.name": SERVICE_NAME,
      "service.namespace": "otel-chat-demo",
    }),
    spanProcessors: [
      // A second, not the default five: a demo shows its trace right away. Small
      // batches stay far below the gateway's size limit for one export.
      new BatchSpanProcessor(exporter, { scheduledDelayMillis: 1000, maxExportBatchSize: 64 }),
    ],
  });
  // W3C trace context only: the gateway drops a client's baggage anyway.
  provider.register({ propagator: new W3CTraceContextPropagator() });

  registerInstrumentations({
    tracerProvider: provider,
    instrumentations: [
      new DocumentLoadInstrumentation(),
      new FetchInstrumentation({
        // The default, said out loud: traceparent goes to this origin and no other.
        propagateTraceHeaderCorsUrls: [],
        // The exporter's own calls are not traced (it bypasses the patched fetch too).
        ignoreUrls: [new RegExp(`${OTLP_PATH}$`)],
        // Drop matched resource timings, or the browser's buffer fills up.
        clearTimingResources: true,
      }),
      new UserInteractionInstrumentation({
        eventNames: ["click"],
        // Only the send button: a click elsewhere is not a user-facing operation here.
        shouldPreventSpanCreation: (_event, element) => element.id !== "send",
      }),
    ],
  });
  return trace.getTracer("chat-web");
}
