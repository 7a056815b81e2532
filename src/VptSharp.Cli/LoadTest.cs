using System.CommandLine;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Spectre.Console;

namespace VptSharp.Cli;

/// <summary>What a load test saw: throughput, latency percentiles of answered requests, and how overload was shed.</summary>
public sealed record LoadTestReport(int Sent, int Ok, int Shed, int Errors, int WrongAnswers, double Seconds, double OkPerSecond,
    double P50Ms, double P99Ms, IReadOnlyDictionary<int, int> StatusCounts);

/// <summary>
/// A bounded HTTP load generator for `vpt serve` (loopback): <c>concurrency</c> clients send <c>requests</c> image
/// posts in total, or stop at the time limit. Each 200 answer's top-1 label is checked against the expected label for
/// that image (what `vpt predict` says offline), so "fast" never hides "wrong".
/// </summary>
public static class LoadTest
{
    public static async Task<LoadTestReport> Run(Uri baseUrl, string task, IReadOnlyList<(byte[] Image, string ExpectedTop1)> images,
        int requests, int concurrency, TimeSpan limit)
    {
        using var http = new HttpClient { BaseAddress = baseUrl, Timeout = TimeSpan.FromSeconds(60) };
        int next = -1, ok = 0, shed = 0, errors = 0, wrong = 0;
        var latencies = new List<double>();
        var statuses = new Dictionary<int, int>();
        var clock = Stopwatch.StartNew();
        async Task Client()
        {
            while (clock.Elapsed < limit)
            {
                int i = Interlocked.Increment(ref next);
                if (i >= requests) return;
                var (bytes, expected) = images[i % images.Count];
                using var content = new ByteArrayContent(bytes);
                content.Headers.ContentType = new MediaTypeHeaderValue("image/png");
                var t = Stopwatch.StartNew();
                HttpResponseMessage resp;
                try { resp = await http.PostAsync($"v1/tasks/{task}/predict?top_k=1", content); }
                catch (HttpRequestException) { Interlocked.Increment(ref errors); continue; }
                double ms = t.Elapsed.TotalMilliseconds;
                lock (statuses) statuses[(int)resp.StatusCode] = statuses.GetValueOrDefault((int)resp.StatusCode) + 1;
                if (resp.StatusCode == HttpStatusCode.OK)
                {
                    using var doc = JsonDocument.Parse(await resp.Content.ReadAsStringAsync());
                    string got = doc.RootElement.GetProperty("top")[0].GetProperty("label").GetString()!;
                    if (got != expected) Interlocked.Increment(ref wrong);
                    Interlocked.Increment(ref ok);
                    lock (latencies) latencies.Add(ms);
                }
                else if (resp.StatusCode is HttpStatusCode.TooManyRequests or HttpStatusCode.ServiceUnavailable) Interlocked.Increment(ref shed);
                else Interlocked.Increment(ref errors);
            }
        }
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(_ => Task.Run(Client)));
        double secs = clock.Elapsed.TotalSeconds;
        latencies.Sort();
        double Pct(double q) => latencies.Count == 0 ? double.NaN : latencies[Math.Min(latencies.Count - 1, (int)Math.Ceiling(q * latencies.Count) - 1)];
        return new LoadTestReport(Math.Min(requests, next + 1), ok, shed, errors, wrong, secs, ok / secs, Pct(0.50), Pct(0.99), statuses);
    }

    public static Command Create()
    {
        var c = new Command("loadtest", "load-test a running `vpt serve`: throughput, p50/p99 latency, shed requests, wrong answers");
        var url = new Option<string>("--url") { Description = "server base URL", DefaultValueFactory = _ => "http://127.0.0.1:8080/" };
        var task = new Option<string>("--task") { Description = "task name", Required = true };
        var data = new Option<string>("--data") { Description = "labelled images to send (any dataset spec with files: folder, list, JSON)", Required = true };
        var requests = new Option<int>("--requests") { Description = "requests in total", DefaultValueFactory = _ => 500 };
        var concurrency = new Option<int>("--concurrency") { Description = "concurrent clients", DefaultValueFactory = _ => 16 };
        var seconds = new Option<double>("--max-seconds") { Description = "stop sending after this long", DefaultValueFactory = _ => 60 };
        var expectTask = new Option<string?>("--expect-from") { Description = "task file whose offline top-1 is the expected answer (default: the images' labels)" };
        foreach (var o in new Option[] { url, task, data, requests, concurrency, seconds, expectTask, Common.Precision, Common.Bf16 }) c.Options.Add(o);
        c.SetAction(r => Common.Run(() =>
        {
            var ds = VptSharp.Data.DatasetSpec.Open(r.GetValue(data)!);
            if (ds is not VptSharp.Data.FileImageDataset files) throw new ArgumentException("--data must name image files (folder, list or JSON map)");
            var images = Enumerable.Range(0, files.Count).Select(i => (File.ReadAllBytes(files.NameOf(i)), files.Classes[files.LabelOf(i)])).ToList();
            if (r.GetValue(expectTask) is string tf)
            {
                // The expected answers come from the same precision the server runs (give the server's --precision here):
                // a bf16 backbone moves near-tie top-1 answers of a weakly trained task, which is not a serving error.
                using var classifier = VptSharp.Inference.LoadedClassifier.Load(tf, null, "cpu", Common.PrecisionFrom(r));
                Console.Error.WriteLine($"expected answers: offline top-1 of {tf} at precision {classifier.Precision}");
                var preds = classifier.Evaluate(files, 64, "cpu").Predictions;
                images = images.Select((im, i) => (im.Item1, classifier.Classes[preds[i]])).ToList();
            }
            var rep = Run(new Uri(r.GetValue(url)!), r.GetValue(task)!, images, r.GetValue(requests), r.GetValue(concurrency),
                TimeSpan.FromSeconds(r.GetValue(seconds))).GetAwaiter().GetResult();
            var t = new Table().AddColumns("sent", "200", "shed (429/503)", "errors", "wrong top-1", "req/s", "p50 ms", "p99 ms");
            t.AddRow($"{rep.Sent}", $"{rep.Ok}", $"{rep.Shed}", $"{rep.Errors}", $"{rep.WrongAnswers}", $"{rep.OkPerSecond:F1}", $"{rep.P50Ms:F1}", $"{rep.P99Ms:F1}");
            AnsiConsole.Write(t);
            Console.WriteLine(JsonSerializer.Serialize(rep));
            return rep.Errors == 0 && rep.WrongAnswers == 0 ? 0 : 1;
        }));
        return c;
    }
}
