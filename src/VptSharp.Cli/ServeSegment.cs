using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using VptSharp.Data;
using VptSharp.Data.MiniSuite;
using VptSharp.Data.Segmentation;
using VptSharp.Inference;

namespace VptSharp.Cli;

/// <summary>
/// `vpt serve`'s segmentation endpoints: <c>POST /v1/tasks/{task}/segment</c> answers a PNG — the label mask (8-bit
/// grayscale, value = class index; default), <c>?format=color</c> the coloured mask, <c>?format=overlay</c> the image with
/// it blended in — and <c>GET /v1/segmentation-tasks</c> lists the tasks. Requests run on the request thread, at most
/// <see cref="MaxConcurrent"/> at once (429 beyond); errors are JSON <c>{"error": ...}</c> as for predict.
/// </summary>
internal static class ServeSegment
{
    public const int MaxConcurrent = 2;

    public static void Map(WebApplication app, SegmentationStore store, long maxBody, ServeMetrics? metrics = null)
    {
        var gate = new SemaphoreSlim(MaxConcurrent);
        app.MapGet("/v1/segmentation-tasks", () => Results.Json(new
        {
            tasks = store.Tasks.Values.OrderBy(t => t.Name).Select(t => new
            {
                name = t.Name, method = t.Artifact.Metadata.Method, classes = t.Artifact.Metadata.Classes, file = t.Path,
                crop = t.Artifact.Metadata.Preprocessing.ImageSize, stride = t.Artifact.Metadata.Stride,
            }),
            rejected = store.Rejected.Select(x => new { name = x.Name, file = x.Path, reason = x.Reason }),
        }));
        app.MapPost("/v1/tasks/{task}/segment", async (HttpContext ctx, string task) =>
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var result = await Segment(ctx, task);
            // Counted like predict requests; task labels only for loaded tasks (bounded cardinality).
            metrics?.Request(store.Tasks.ContainsKey(task) ? task : "(unknown)", (result as IStatusCodeHttpResult)?.StatusCode ?? 200, clock.Elapsed);
            return result;
        });

        async Task<IResult> Segment(HttpContext ctx, string task)
        {
            if (!store.Tasks.TryGetValue(task, out var served))
                return Results.Json(Error($"unknown segmentation task {task}; GET /v1/segmentation-tasks lists them"), statusCode: 404);
            string format = ctx.Request.Query["format"].ToString() is { Length: > 0 } f ? f : "labels";
            if (format is not ("labels" or "color" or "overlay"))
                return Results.Json(Error($"format {format}: use labels (default), color or overlay"), statusCode: 400);
            var type = ctx.Request.ContentType ?? "";
            if (!(type.StartsWith("image/") || type.StartsWith("application/octet-stream") || type == ""))
                return Results.Json(Error($"content type {type} is not an image; send the JPEG/PNG bytes as image/jpeg, image/png or application/octet-stream"), statusCode: 415);
            if (!await gate.WaitAsync(0))
            {
                ctx.Response.Headers.RetryAfter = "1";
                return Results.Json(Error("server busy: segmentation requests at capacity; retry after a second"), statusCode: 429);
            }
            try
            {
                var (status, image, error) = await ReadImage(ctx, maxBody);
                if (image is null) return Results.Json(Error(error!), statusCode: status);
                var mask = await Task.Run(() => store.Segment(served, image));
                byte[] png = format switch
                {
                    "color" => MiniSuiteWriter.EncodePng(LabelMaskCodec.Colorize(mask)),
                    "overlay" => MiniSuiteWriter.EncodePng(LabelMaskCodec.Overlay(image, mask)),
                    _ => LabelMaskCodec.EncodePng(mask),
                };
                return Results.Bytes(png, "image/png");
            }
            catch (KeyNotFoundException e) { return Results.Json(Error($"{e.Message}; GET /v1/segmentation-tasks lists them"), statusCode: 404); }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                Console.Error.WriteLine($"segment: {e.GetType().Name}: {Common.OneLine(e.Message)}");
                return Results.Json(Error("internal error while segmenting; the server log has the details"), statusCode: 500);
            }
            finally { gate.Release(); }
        }
    }

    static object Error(string message) => new { error = message };

    /// <summary>The body as a decoded image, with the body cap enforced while streaming and the pixel cap from the header;
    /// on failure the status and one-line error (both the predict and the segment endpoints read images through this).</summary>
    internal static async Task<(int Status, RgbImage? Image, string? Error)> ReadImage(HttpContext ctx, long limit)
    {
        if (ctx.Request.ContentLength is long declared && declared > limit)
        {
            ctx.Response.Headers.Connection = "close"; // the unread body is not drained: the client must not reuse this connection
            return (413, null, $"image body of {declared} bytes exceeds the {limit}-byte limit (--max-body-kb)");
        }
        // Kestrel enforces the limit while streaming, so an oversized body is never buffered.
        if (ctx.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } cap) cap.MaxRequestBodySize = limit;
        using var ms = new MemoryStream();
        var buf = new byte[81920];
        try
        {
            int n;
            while ((n = await ctx.Request.Body.ReadAsync(buf, ctx.RequestAborted)) > 0)
            {
                if (ms.Length + n > limit)
                {
                    ctx.Response.Headers.Connection = "close";
                    return (413, null, $"image body exceeds the {limit}-byte limit (--max-body-kb)");
                }
                ms.Write(buf, 0, n);
            }
        }
        catch (BadHttpRequestException e) when (e.StatusCode == 413)
        {
            ctx.Response.Headers.Connection = "close";
            return (413, null, $"image body exceeds the {limit}-byte limit (--max-body-kb)");
        }
        catch (BadHttpRequestException e) when (e.StatusCode == 408)
        {
            ctx.Response.Headers.Connection = "close";
            return (408, null, $"image body arrived slower than {ServeCommand.MinBodyBytesPerSecond / 1024:F0} KB/s; send it again on a faster link");
        }
        catch (BadHttpRequestException e) { return (400, null, $"malformed request body ({Common.OneLine(e.Message)})"); }
        var bytes = ms.ToArray();
        if (bytes.Length == 0) return (400, null, "empty body; POST the image bytes");
        // A decode holds up to MaxPixels × 4 bytes (formats SkiaSharp cannot decode in strips): a bounded number run at
        // once, so many small bodies of huge images cannot together take the memory. Waiting is brief; a long wait is 429.
        if (!await DecodeGate.WaitAsync(TimeSpan.FromSeconds(5), ctx.RequestAborted))
        {
            ctx.Response.Headers.RetryAfter = "1";
            return (429, null, "server busy: image decoding at capacity; retry after a second");
        }
        try
        {
            var (w, h) = ImageDecoder.ReadSize(bytes, "request body");
            if (ImageDecoder.TooLarge(w, h)) return (413, null, $"image of {w}×{h} pixels exceeds the {ImageDecoder.MaxPixels:N0}-pixel limit; downscale it");
            return (200, ImageDecoder.Decode(bytes, "request body"), null);
        }
        catch (BadImageException e) { return (400, null, e.Message); }
        finally { DecodeGate.Release(); }
    }

    /// <summary>Decodes at once across the process's endpoints: as many as cores, at least two.</summary>
    static readonly SemaphoreSlim DecodeGate = new(Math.Max(2, Environment.ProcessorCount));
}
