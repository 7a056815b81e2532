using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using VptSharp.Inference;
using static TorchSharp.torch;

namespace VptSharp.Cli;

/// <summary>
/// The browser page of `vpt serve`: <c>GET /</c> and its script, style sheet and icon (embedded in this assembly, no
/// CDN), plus the two small JSON endpoints the page reads: <c>/v1/overview</c> (tasks with their metadata) and
/// <c>/v1/stats</c> (the counters of <c>/metrics</c> as JSON). Every response carries a strict Content-Security-Policy
/// and nosniff. Task names and labels come from files anyone can drop into the folder, so the page builds its DOM with
/// textContent only; the policy's Trusted Types clause makes any HTML sink (innerHTML, …) throw in the browser.
/// </summary>
public static class ServePage
{
    /// <summary>Scripts and styles only from separate same-origin files (no inline code or style attributes); images
    /// also from blob: (the preview of the chosen file); no plugins, framing, base rewriting or form posts.</summary>
    public const string ContentSecurityPolicy =
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; " +
        "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; " +
        "require-trusted-types-for 'script'; trusted-types 'none'";

    sealed record StaticFile(byte[] Bytes, string ContentType, string ETag);

    static readonly (string Route, string Resource, string ContentType)[] Files =
    [
        ("/", "index.html", "text/html; charset=utf-8"),
        ("/page/page.css", "page.css", "text/css; charset=utf-8"),
        ("/page/page.js", "page.js", "text/javascript; charset=utf-8"),
        ("/page/icon.svg", "icon.svg", "image/svg+xml"),
    ];

    /// <summary>Adds the security headers to every response of <paramref name="app"/> and maps the page's routes.
    /// <paramref name="prometheusText"/> yields the current /metrics text (the page's live panel is a view of it).</summary>
    public static void Map(WebApplication app, TaskStore store, Func<string> prometheusText)
    {
        app.Use(async (ctx, next) =>
        {
            var h = ctx.Response.Headers;
            h.ContentSecurityPolicy = ContentSecurityPolicy;
            h.XContentTypeOptions = "nosniff";
            h["Referrer-Policy"] = "no-referrer";
            h["Cross-Origin-Opener-Policy"] = "same-origin";
            h["Cross-Origin-Resource-Policy"] = "same-origin";
            await next(ctx);
        });

        foreach (var (route, resource, type) in Files)
        {
            var file = Load(resource, type);
            app.MapGet(route, (HttpContext ctx) =>
            {
                ctx.Response.Headers.CacheControl = "no-cache";
                ctx.Response.Headers.ETag = file.ETag;
                if (ctx.Request.Headers.IfNoneMatch.ToString() == file.ETag) return Results.StatusCode(304);
                return Results.Bytes(file.Bytes, file.ContentType);
            });
        }

        app.MapGet("/v1/overview", () => Results.Json(Overview(store)));
        var clock = Stopwatch.StartNew();
        app.MapGet("/v1/stats", () => Results.Json(Stats(prometheusText(), clock.Elapsed.TotalSeconds, TasksVersion(store))));
    }

    static StaticFile Load(string resource, string contentType)
    {
        var asm = Assembly.GetExecutingAssembly();
        using var s = asm.GetManifestResourceStream("ServePage/" + resource)
            ?? throw new InvalidOperationException($"embedded resource ServePage/{resource} is missing from {asm.GetName().Name}");
        using var ms = new MemoryStream();
        s.CopyTo(ms);
        var bytes = ms.ToArray();
        return new StaticFile(bytes, contentType, "\"" + Convert.ToHexStringLower(SHA256.HashData(bytes))[..16] + "\"");
    }

    /// <summary>The backbone and every task with what a person choosing one wants to know. Read under the store's lock,
    /// so a hot reload cannot dispose a model while its parameters are counted.</summary>
    static object Overview(TaskStore store) => store.Use(view =>
    {
        var bb = store.Backbone;
        long backboneParams = bb.Vit?.Config.ParameterCount ?? bb.Model.BackboneParameterCount;
        var dtype = view.Engine?.BackboneDtype ?? ScalarType.Float32;
        string onePassPrecision = dtype == ScalarType.BFloat16 ? "bf16 backbone, fp32 head" : "fp32";
        return new
        {
            backbone = new
            {
                source = bb.Source, sha256 = bb.Sha256, parameters = backboneParams,
                architecture = bb.Vit is { } v
                    ? (object)new { family = "vit", image_size = v.Config.ImageSize, patch_size = v.Config.PatchSize, width = v.Config.Width, depth = v.Config.Depth, heads = v.Config.Heads }
                    : new { family = bb.Model.Family, image_size = bb.Model.ImageSize, width = bb.Model.NumFeatures, depth = bb.Model.Depth },
            },
            folder = store.Folder,
            version = TasksVersion(store),
            tasks = view.Tasks.Values.OrderBy(t => t.Name, StringComparer.Ordinal).Select(t =>
            {
                bool onePass = view.EngineIndex.ContainsKey(t.Name);
                long trainable = t.Model.TrainableCount, method = t.Model.MethodCount;
                return new
                {
                    name = t.Name, file = Path.GetFileName(t.Path), method = t.Artifact.Metadata.Method,
                    method_config = t.Artifact.Metadata.MethodConfig.ToJsonString(),
                    classes = t.Classes, image_size = t.Preprocessing.ImageSize,
                    trainable_parameters = new { method, head = trainable - method, total = trainable, percent_of_backbone = 100.0 * trainable / Math.Max(1, backboneParams) },
                    one_pass = onePass,
                    precision = onePass ? onePassPrecision : "fp32",
                    metrics = t.Artifact.Metadata.Metrics,
                    modified_utc = t.ModifiedUtc.ToString("O", CultureInfo.InvariantCulture),
                };
            }).ToList(),
            rejected = store.Rejected.OrderBy(r => r.Name, StringComparer.Ordinal).Select(r => new { name = r.Name, file = Path.GetFileName(r.Path), reason = r.Reason }).ToList(),
        };
    });

    /// <summary>Changes whenever a task is added, replaced, removed or refused: the page reloads its task list then.</summary>
    static string TasksVersion(TaskStore store)
    {
        var sb = new StringBuilder();
        foreach (var t in store.Tasks.Values.OrderBy(t => t.Name, StringComparer.Ordinal)) sb.Append(t.Name).Append('\0').Append(t.ModifiedUtc.Ticks).Append('\0').Append(t.Length).Append('\n');
        foreach (var r in store.Rejected.OrderBy(r => r.Name, StringComparer.Ordinal)) sb.Append("rejected\0").Append(r.Name).Append('\n');
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())))[..16];
    }

    static readonly Regex Sample = new(@"^(?<name>[a-z_]+)(?:\{(?<labels>.*)\})?\s+(?<value>\S+)$", RegexOptions.Compiled);
    static readonly Regex CodeLabel = new(@"code=""(?<code>\d+)""$", RegexOptions.Compiled);
    static readonly Regex LeLabel = new(@"^le=""(?<le>[^""]+)""$", RegexOptions.Compiled);

    /// <summary>
    /// The counters of the Prometheus text as JSON: requests by status code, latency sum/count, batch count, images
    /// and size histogram (cumulative, as exposed), queue length. Rates are left to the reader, which divides the
    /// differences of two snapshots by the difference of their <c>uptime_seconds</c>.
    /// </summary>
    public static object Stats(string prometheus, double uptimeSeconds, string tasksVersion)
    {
        var byCode = new SortedDictionary<string, long>(StringComparer.Ordinal);
        var batchBuckets = new List<(string Le, long Count)>();
        var scalars = new Dictionary<string, double>();
        foreach (var raw in prometheus.Split('\n'))
        {
            var line = raw.TrimEnd('\r');
            if (line.Length == 0 || line[0] == '#') continue;
            var m = Sample.Match(line);
            if (!m.Success || !double.TryParse(m.Groups["value"].Value, NumberStyles.Float, CultureInfo.InvariantCulture, out var value)) continue;
            string name = m.Groups["name"].Value, labels = m.Groups["labels"].Value;
            if (name == "vpt_requests_total" && CodeLabel.Match(labels) is { Success: true } code)
                byCode[code.Groups["code"].Value] = byCode.GetValueOrDefault(code.Groups["code"].Value) + (long)value;
            else if (name == "vpt_batch_size_bucket" && LeLabel.Match(labels) is { Success: true } le)
                batchBuckets.Add((le.Groups["le"].Value, (long)value));
            else if (labels.Length == 0)
                scalars[name] = value;
        }
        double S(string n) => scalars.GetValueOrDefault(n);
        return new
        {
            uptime_seconds = Math.Round(uptimeSeconds, 3),
            tasks_loaded = (long)S("vpt_tasks_loaded"),
            tasks_version = tasksVersion,
            queue_length = (long)S("vpt_queue_length"),
            requests = new { total = byCode.Values.Sum(), by_code = byCode },
            latency_seconds = new { count = (long)S("vpt_request_latency_seconds_count"), sum = S("vpt_request_latency_seconds_sum") },
            batches = new
            {
                count = (long)S("vpt_batch_size_count"), images = (long)S("vpt_batch_size_sum"), seconds = S("vpt_batch_seconds_total"),
                size_buckets = batchBuckets.Select(b => new { le = b.Le, count = b.Count }).ToList(),
            },
        };
    }
}
