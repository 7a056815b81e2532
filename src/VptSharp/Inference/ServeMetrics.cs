using System.Collections.Concurrent;
using System.Globalization;
using System.Text;

namespace VptSharp.Inference;

/// <summary>
/// What `vpt serve` exposes at /metrics: requests by task and status, request latency and batch size histograms,
/// batch time, loaded tasks and queue length, in Prometheus text format (version 0.0.4).
/// </summary>
public sealed class ServeMetrics
{
    static readonly double[] LatencyBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
    static readonly double[] BatchBuckets = [1, 2, 4, 8, 16, 32, 64, 128];
    readonly ConcurrentDictionary<(string Task, int Status), long> requests = new();
    readonly long[] latencyCounts = new long[LatencyBuckets.Length + 1];
    readonly long[] batchCounts = new long[BatchBuckets.Length + 1];
    double latencySum, batchTimeSum; long batchImages, batches;
    readonly object sync = new();

    public void Request(string task, int status, TimeSpan latency)
    {
        requests.AddOrUpdate((task, status), 1, (_, n) => n + 1);
        lock (sync) { latencyCounts[Bucket(LatencyBuckets, latency.TotalSeconds)]++; latencySum += latency.TotalSeconds; }
    }

    public void Batch(int size, TimeSpan took)
    {
        lock (sync) { batchCounts[Bucket(BatchBuckets, size)]++; batchImages += size; batches++; batchTimeSum += took.TotalSeconds; }
    }

    static int Bucket(double[] bounds, double v) { int i = 0; while (i < bounds.Length && v > bounds[i]) i++; return i; }

    public string Prometheus(int tasksLoaded, int queueLength)
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine("# TYPE vpt_requests_total counter");
        foreach (var ((task, status), n) in requests.OrderBy(kv => kv.Key.Task).ThenBy(kv => kv.Key.Status))
            sb.AppendLine(c, $"vpt_requests_total{{task=\"{EscapeLabel(task)}\",code=\"{status}\"}} {n}");
        lock (sync)
        {
            Histogram(sb, "vpt_request_latency_seconds", LatencyBuckets, latencyCounts, latencySum);
            Histogram(sb, "vpt_batch_size", BatchBuckets, batchCounts, batchImages);
            sb.AppendLine("# TYPE vpt_batch_seconds_total counter").AppendLine(c, $"vpt_batch_seconds_total {batchTimeSum}");
        }
        sb.AppendLine("# TYPE vpt_tasks_loaded gauge").AppendLine(c, $"vpt_tasks_loaded {tasksLoaded}");
        sb.AppendLine("# TYPE vpt_queue_length gauge").AppendLine(c, $"vpt_queue_length {queueLength}");
        return sb.ToString();
    }

    /// <summary>A label value in the Prometheus text format: backslash, double quote and newline escaped.</summary>
    public static string EscapeLabel(string v) => v.Replace("\\", "\\\\").Replace("\"", "\\\"").Replace("\n", "\\n");

    static void Histogram(StringBuilder sb, string name, double[] bounds, long[] counts, double sum)
    {
        var c = CultureInfo.InvariantCulture;
        sb.AppendLine($"# TYPE {name} histogram");
        long cumulative = 0;
        for (int i = 0; i < bounds.Length; i++) { cumulative += counts[i]; sb.AppendLine(c, $"{name}_bucket{{le=\"{bounds[i]}\"}} {cumulative}"); }
        cumulative += counts[^1];
        sb.AppendLine(c, $"{name}_bucket{{le=\"+Inf\"}} {cumulative}").AppendLine(c, $"{name}_sum {sum}").AppendLine(c, $"{name}_count {cumulative}");
    }
}
