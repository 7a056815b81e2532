using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using VptSharp.Checkpoints;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

/// <summary>Hub downloads against a loopback HTTP server that serves files the test made.</summary>
public sealed class HubTests : IDisposable
{
    readonly HttpListener listener = new();
    readonly Dictionary<string, byte[]> files = new();
    readonly List<string?> ranges = new();
    public string? EtagOverride;
    readonly string endpoint;
    readonly CancellationTokenSource stop = new();

    public HubTests()
    {
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        int port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        endpoint = $"http://127.0.0.1:{port}";
        listener.Prefixes.Add(endpoint + "/");
        listener.Start();
        _ = Task.Run(Serve);
    }

    async Task Serve()
    {
        while (!stop.IsCancellationRequested)
        {
            HttpListenerContext ctx;
            try { ctx = await listener.GetContextAsync(); } catch { return; }
            var path = ctx.Request.Url!.AbsolutePath;
            lock (ranges) ranges.Add(ctx.Request.Headers["Range"]);
            if (!files.TryGetValue(path, out var data)) { ctx.Response.StatusCode = 404; ctx.Response.Close(); continue; }
            long start = 0;
            if (ctx.Request.Headers["Range"] is string r && r.StartsWith("bytes="))
            {
                start = long.Parse(r[6..].TrimEnd('-'));
                ctx.Response.StatusCode = 206;
            }
            ctx.Response.AddHeader("X-Linked-Etag", $"\"{EtagOverride ?? Convert.ToHexStringLower(SHA256.HashData(data))}\"");
            ctx.Response.ContentLength64 = data.Length - start;
            await ctx.Response.OutputStream.WriteAsync(data.AsMemory((int)start));
            ctx.Response.Close();
        }
    }

    public void Dispose() { stop.Cancel(); listener.Stop(); listener.Close(); }

    void Publish(string repo)
    {
        files[$"/{repo}/resolve/main/model.safetensors"] = File.ReadAllBytes(Golden("timm_vit/model.safetensors"));
        files[$"/{repo}/resolve/main/config.json"] = File.ReadAllBytes(Golden("timm_vit/config.json"));
    }

    [Fact]
    public void DownloadsCachesAndLoadsAHubBackbone()
    {
        Publish("org/tiny-vit");
        var hub = new HubClient(endpoint, TempDir());
        using var bb = BackboneLoader.Load("hf:org/tiny-vit", hub: hub);
        Assert.Equal(2, bb.Config.Heads); // from config.json's model_args
        string cached = hub.LocalPath("org/tiny-vit", "main", "model.safetensors");
        Assert.Equal(File.ReadAllBytes(Golden("timm_vit/model.safetensors")), File.ReadAllBytes(cached));
        Assert.Equal(CheckpointReader.Sha256OfFile(Golden("timm_vit/model.safetensors")), bb.Sha256);
        int requests = ranges.Count;
        using var again = BackboneLoader.Load("hf:org/tiny-vit", hub: hub);
        Assert.Equal(requests, ranges.Count); // served from the cache
    }

    [Fact]
    public async Task ResumesAPartialDownloadWithARangeRequest()
    {
        Publish("org/resume");
        var hub = new HubClient(endpoint, TempDir());
        string final = hub.LocalPath("org/resume", "main", "model.safetensors");
        Directory.CreateDirectory(Path.GetDirectoryName(final)!);
        var all = File.ReadAllBytes(Golden("timm_vit/model.safetensors"));
        File.WriteAllBytes(final + ".part", all[..40000]);
        var got = await hub.GetFileAsync("org/resume", "main", "model.safetensors");
        Assert.Equal(final, got);
        Assert.Equal(all, File.ReadAllBytes(final));
        Assert.Contains("bytes=40000-", ranges);
        Assert.False(File.Exists(final + ".part"));
    }

    [Fact]
    public async Task ChecksumMismatchLeavesNoFileUnderTheFinalName()
    {
        Publish("org/bad");
        EtagOverride = new string('a', 64);
        var hub = new HubClient(endpoint, TempDir());
        var e = await Assert.ThrowsAsync<CheckpointException>(() => hub.GetFileAsync("org/bad", "main", "model.safetensors"));
        Assert.Contains("sha256", e.Message);
        string final = hub.LocalPath("org/bad", "main", "model.safetensors");
        Assert.False(File.Exists(final));
        Assert.False(File.Exists(final + ".part"));
    }

    [Fact]
    public async Task MissingFileFailsWithTheUrl()
    {
        var hub = new HubClient(endpoint, TempDir());
        var e = await Assert.ThrowsAsync<CheckpointException>(() => hub.GetFileAsync("org/none", "main", "model.safetensors"));
        Assert.Contains("404", e.Message);
        Assert.Null(await hub.GetFileAsync("org/none", "main", "config.json", optional: true));
    }
}
