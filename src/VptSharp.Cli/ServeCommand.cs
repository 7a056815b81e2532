using System.CommandLine;
using System.Diagnostics;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Spectre.Console;
using VptSharp.Data;
using VptSharp.Inference;

namespace VptSharp.Cli;

/// <summary>
/// `vpt serve`: one frozen backbone, every task file of a folder (hot-reloaded), an HTTP API on loopback. Requests
/// for any task are micro-batched together; a bounded queue sheds overload with 429. This file is the HTTP front end
/// only: tasks live in <see cref="TaskStore"/>, batches are answered by <see cref="TaskBatch"/>, counters are
/// <see cref="ServeMetrics"/>.
/// </summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var backbone = Common.Backbone();
        var c = new Command("serve", "HTTP service: POST an image to /v1/tasks/{task}/predict (or /v1/predict for several tasks) → top-k JSON");
        var tasksDir = new Option<string>("--tasks") { Description = "folder of .vpt task files (watched: new and changed files load, deleted ones unload)", Required = true };
        var host = new Option<string>("--host") { Description = "address to bind (loopback by default)", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "TCP port (0 = any free port, printed at start)", DefaultValueFactory = _ => 8080 };
        var maxBatch = new Option<int>("--max-batch") { Description = "largest micro-batch (images, across tasks)", DefaultValueFactory = _ => 32 };
        var maxDelay = new Option<double>("--max-delay-ms") { Description = "longest wait for a batch to fill", DefaultValueFactory = _ => 5 };
        var queue = new Option<int>("--queue") { Description = "waiting requests beyond which new ones get 429", DefaultValueFactory = _ => 256 };
        var maxBody = new Option<int>("--max-body-kb") { Description = "largest accepted image body (413 above)", DefaultValueFactory = _ => 8192 };
        var rescan = new Option<double>("--rescan-seconds") { Description = "how often the task folder is re-read", DefaultValueFactory = _ => 2 };
        var drain = new Option<double>("--drain-seconds") { Description = "on SIGTERM: /readyz answers 503 and requests are still served this long, then the listener closes", DefaultValueFactory = _ => 0 };
        var shutdown = new Option<double>("--shutdown-timeout-seconds") { Description = "after the listener closes, the longest wait for in-flight requests", DefaultValueFactory = _ => 30 };
        Common.AddBackboneOptions(c, backbone);
        foreach (var o in new Option[] { tasksDir, host, port, maxBatch, maxDelay, queue, maxBody, rescan, Common.Precision, Common.Bf16, drain, shutdown, Common.Threads }) c.Options.Add(o);
        c.SetAction(r => Common.Run(() =>
        {
            Common.ApplyThreads(r);
            CheckServeOptions(r.GetValue(host)!, r.GetValue(port), r.GetValue(maxBatch), r.GetValue(queue), r.GetValue(maxBody), r.GetValue(rescan), r.GetValue(maxDelay));
            var replica = new ServeReplica(TimeSpan.FromSeconds(r.GetValue(drain)), TimeSpan.FromSeconds(r.GetValue(shutdown)));
            using var bb = Common.LoadBackbone(r.GetValue(backbone)!, Common.ArchFrom(r));
            // Every task served keeps the shared backbone frozen (TaskStore refuses tasks with backbone tensors), so a
            // ConvNet's conv + BatchNorm pairs run as one convolution each, as in vpt eval and predict.
            bb.Model.FoldNormsForInference();
            // The shared backbone is frozen for every prefix task the engine serves (other tasks run on their own fp32 models).
            var precision = VptSharp.Hardware.PrecisionPolicy.Resolve(Common.PrecisionFrom(r), backboneFrozen: true, TorchSharp.DeviceType.CPU, VptSharp.Hardware.CpuFeatures.Current);
            Console.WriteLine(MultiTaskEngine.Supports(bb) ? $"precision {precision} for the shared prefix-task backbone; {Common.CpuLine()}"
                : $"precision fp32 (a {bb.Model.Family} backbone: every task runs its own model in float32); {Common.CpuLine()}");
            using var store = new TaskStore(bb, r.GetValue(tasksDir)!, precision.Dtype);
            store.Log += m => Console.WriteLine(m);
            store.Rescan();
            using var segments = new SegmentationStore(bb, r.GetValue(tasksDir)!);
            segments.Log += m => Console.WriteLine(m);
            segments.Rescan();
            var metrics = new ServeMetrics();
            var batcher = new MicroBatcher<PredictionRequest, ClassScore[]?>(batch => TaskBatch.Predict(store, batch), r.GetValue(maxBatch),
                TimeSpan.FromMilliseconds(r.GetValue(maxDelay)), r.GetValue(queue));
            batcher.BatchProcessed += (n, t) => metrics.Batch(n, t);
            var app = Build(store, batcher, metrics, r.GetValue(host)!, r.GetValue(port), r.GetValue(maxBody) * 1024L, replica, segments);
            using var timer = new Timer(_ => { try { store.Rescan(); segments.Rescan(); } catch (Exception e) { Console.Error.WriteLine($"rescan: {ErrorMessages.For(e)}"); } },
                null, TimeSpan.FromSeconds(r.GetValue(rescan)), TimeSpan.FromSeconds(r.GetValue(rescan)));
            app.Start();
            Console.WriteLine($"serving {store.Tasks.Count} task(s) + {segments.Tasks.Count} segmentation task(s) from {store.Folder} on {string.Join(", ", app.Urls)} (backbone {bb.Source}, sha256 {bb.Sha256[..12]}…)");
            app.WaitForShutdown();
            batcher.DisposeAsync().AsTask().Wait();
            return 0;
        }));
        return c;
    }

    /// <summary>Flags checked before anything is loaded or bound: a host that is neither an address nor a host name is
    /// refused (it would otherwise bind every interface), and sizes stay in ranges the server can honour.</summary>
    static void CheckServeOptions(string host, int port, int maxBatch, int queue, int maxBodyKb, double rescan, double maxDelay)
    {
        if (!System.Net.IPAddress.TryParse(host, out _) && host != "localhost" && Uri.CheckHostName(host) != UriHostNameType.Dns)
            throw new ArgumentException($"--host '{host}': not an IP address or host name; use e.g. 127.0.0.1 (loopback) or 0.0.0.0 (every interface)");
        if (port < 0 || port > 65535) throw new ArgumentException($"--port {port}: must be in 0..65535");
        if (maxBatch < 1 || maxBatch > 4096) throw new ArgumentException($"--max-batch {maxBatch}: must be in 1..4096");
        if (queue < 1 || queue > 1_000_000) throw new ArgumentException($"--queue {queue}: must be in 1..1000000");
        if (maxBodyKb < 1 || maxBodyKb > 1 << 20) throw new ArgumentException($"--max-body-kb {maxBodyKb}: must be in 1..1048576");
        if (!(rescan > 0 && rescan <= 86400)) throw new ArgumentException($"--rescan-seconds {rescan}: must be in (0, 86400]");
        if (!(maxDelay >= 0 && maxDelay <= 10000)) throw new ArgumentException($"--max-delay-ms {maxDelay}: must be in 0..10000");
    }

    public const double MinBodyBytesPerSecond = 16 * 1024;

    public static WebApplication Build(TaskStore store, MicroBatcher<PredictionRequest, ClassScore[]?> batcher, ServeMetrics metrics, string host, int port, long maxBody,
        ServeReplica? replica = null, SegmentationStore? segments = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        replica?.Configure(builder);
        builder.Logging.ClearProviders();
        // Kestrel enforces the body cap while streaming (an oversized body is answered 413 without being buffered).
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = maxBody;
            // A body must keep arriving at 16 KB/s after 5 s (Kestrel answers 408 and closes otherwise): at Kestrel's
            // default 240 B/s, two clients trickling 8 MB would hold the two segmentation slots for hours.
            k.Limits.MinRequestBodyDataRate = new Microsoft.AspNetCore.Server.Kestrel.Core.MinDataRate(MinBodyBytesPerSecond, TimeSpan.FromSeconds(5));
        });
        // A task's recorded metrics may hold NaN; JSON has no NaN, and a response that cannot be written fails after its
        // handler returned (an empty 500). Named literals write it as "NaN".
        builder.Services.ConfigureHttpJsonOptions(o => o.SerializerOptions.NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals);
        builder.WebHost.UseUrls($"http://{host}:{port}");
        var app = builder.Build();
        // Kestrel resolves dot segments, so /v1/tasks/%2e%2e/predict would reach /v1/predict: encoded dots or slashes
        // and dot segments in the raw path are refused before routing.
        app.Use(async (ctx, next) =>
        {
            string raw = ctx.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpRequestFeature>()?.RawTarget ?? ctx.Request.Path;
            string path = raw.Split('?')[0];
            if (path.Contains("..") || path.Contains("%2e", StringComparison.OrdinalIgnoreCase) || path.Contains("%2f", StringComparison.OrdinalIgnoreCase)
                || path.Contains("%5c", StringComparison.OrdinalIgnoreCase) || path.Contains('\\'))
            {
                ctx.Response.StatusCode = 404;
                await ctx.Response.WriteAsJsonAsync(Error("no such path (dot segments and encoded separators are not routed)"));
                return;
            }
            await next();
        });
        replica?.MapProbes(app, store);

        app.MapGet("/healthz", () => Results.Json(new { status = "ok", tasks = store.Tasks.Count, queue = batcher.QueueLength }));
        app.MapGet("/v1/tasks", () =>
        {
            var engineTasks = store.EngineTasks;
            return Results.Json(new
        {
            backbone = new { source = store.Backbone.Source, sha256 = store.Backbone.Sha256 },
            tasks = store.Tasks.Values.OrderBy(t => t.Name).Select(t => new
            {
                name = t.Name, method = t.Artifact.Metadata.Method, classes = t.Classes, file = t.Path, image_size = t.Preprocessing.ImageSize,
                one_pass = engineTasks.Contains(t.Name), // served by the multi-task engine (VPT-prefix)
            }),
            rejected = store.Rejected.Select(x => new { name = x.Name, file = x.Path, reason = x.Reason }),
        });
        });
        app.MapGet("/metrics", () => Results.Text(metrics.Prometheus(store.Tasks.Count, batcher.QueueLength), "text/plain; version=0.0.4"));
        app.MapPost("/v1/tasks/{task}/predict", async (HttpContext ctx, string task) =>
        {
            var clock = Stopwatch.StartNew();
            var (status, body) = await Predict(ctx, store, batcher, [task], maxBody);
            metrics.Request(store.Tasks.ContainsKey(task) ? task : "(unknown)", status, clock.Elapsed); // labels only for known tasks: bounded cardinality
            return Results.Json(status == 200 ? ((Dictionary<string, object>)body)[task] : body, statusCode: status);
        });
        app.MapPost("/v1/predict", async (HttpContext ctx) =>
        {
            var clock = Stopwatch.StartNew();
            var names = ctx.Request.Query["tasks"].ToString() is { Length: > 0 } q ? q.Split(',', StringSplitOptions.RemoveEmptyEntries) : store.Tasks.Keys.Order().ToArray();
            var (status, body) = await Predict(ctx, store, batcher, names, maxBody);
            metrics.Request("*", status, clock.Elapsed);
            return Results.Json(body, statusCode: status);
        });
        if (segments is not null) ServeSegment.Map(app, segments, maxBody, metrics); // POST /v1/tasks/{task}/segment → PNG
        ServePage.Map(app, store, () => metrics.Prometheus(store.Tasks.Count, batcher.QueueLength)); // GET /, /v1/overview, /v1/stats
        return app;
    }

    static object Error(string message) => new { error = message };

    /// <summary>Reads, checks and decodes the image body once, then queues one request per task and awaits them all.</summary>
    static async Task<(int Status, object Body)> Predict(HttpContext ctx, TaskStore store, MicroBatcher<PredictionRequest, ClassScore[]?> batcher, string[] names, long limit)
    {
        try
        {
            var tasks = store.Tasks;
            var unknown = names.Where(n => !tasks.ContainsKey(n)).ToList();
            if (unknown.Count > 0) return (404, Error($"unknown task(s) {string.Join(", ", unknown)}; GET /v1/tasks lists them"));
            int topK = int.TryParse(ctx.Request.Query["top_k"], out var k) ? Math.Clamp(k, 1, 1000) : 5;
            var type = ctx.Request.ContentType ?? "";
            if (!(type.StartsWith("image/") || type.StartsWith("application/octet-stream") || type == ""))
                return (415, Error($"content type {type} is not an image; send the JPEG/PNG bytes as image/jpeg, image/png or application/octet-stream"));
            // Shed before reading or decoding anything: a full queue costs no memory.
            if (batcher.QueueLength + names.Length > batcher.QueueCapacity)
            {
                ctx.Response.Headers.RetryAfter = "1";
                return (429, Error("server busy: request queue full; retry after a second"));
            }
            var (status, image, error) = await ServeSegment.ReadImage(ctx, limit);
            if (image is null) return (status, Error(error!));
            var pending = new List<(string Name, Task<ClassScore[]?> Result)>();
            foreach (var name in names)
            {
                var pre = tasks[name].Preprocessing;
                var tf = new ImageTransform(pre, train: false);
                var pixels = new float[tf.OutputLength];
                tf.Apply(image, new Random(0), pixels);
                if (!batcher.TryEnqueue(new PredictionRequest(name, pixels, pre.ImageSize, topK), out var result))
                {
                    ctx.Response.Headers.RetryAfter = "1";
                    return (429, Error("server busy: request queue full; retry after a second"));
                }
                pending.Add((name, result));
            }
            var answers = new Dictionary<string, object>();
            foreach (var (name, result) in pending)
            {
                var done = await Task.WhenAny(result, Task.Delay(TimeSpan.FromSeconds(30), ctx.RequestAborted));
                if (done != result) return (503, Error("prediction timed out; the server is overloaded"));
                if (await result is not ClassScore[] top) return (404, Error($"task {name} was unloaded while the request waited; GET /v1/tasks lists the tasks now"));
                answers[name] = new { task = name, top = top.Select(s => new { label = s.Label, index = s.Index, probability = Math.Round(s.Probability, 6) }) };
            }
            return (200, answers);
        }
        catch (BadHttpRequestException e) { return (400, Error($"malformed request ({Common.OneLine(e.Message)})")); }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // The process keeps serving; the client gets no internals (native frames, paths), the log gets one line.
            Console.Error.WriteLine($"predict: {e.GetType().Name}: {Common.OneLine(e.Message)}");
            return (500, Error("internal error while predicting; the server log has the details"));
        }
    }
}
