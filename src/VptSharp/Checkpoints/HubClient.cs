using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text.RegularExpressions;

namespace VptSharp.Checkpoints;

public readonly record struct DownloadProgress(string File, long Received, long? Total);

/// <summary>
/// Downloads files of a Hugging Face hub repository into a local cache (~/.cache/vptsharp, or $VPTSHARP_CACHE).
/// Partial downloads live in "*.part" and are resumed with an HTTP Range request; the final name appears only
/// after the size (and the sha256, when the server states it in an ETag) has been verified.
/// </summary>
public sealed class HubClient(string? endpoint = null, string? cacheDir = null, HttpClient? http = null)
{
    public string Endpoint { get; } = (endpoint ?? Environment.GetEnvironmentVariable("VPTSHARP_HF_ENDPOINT")
        ?? Environment.GetEnvironmentVariable("HF_ENDPOINT") ?? "https://huggingface.co").TrimEnd('/');
    public string CacheDir { get; } = cacheDir ?? DefaultCacheDir;
    readonly HttpClient http = http ?? new HttpClient { Timeout = TimeSpan.FromHours(2) };

    public static string DefaultCacheDir => Environment.GetEnvironmentVariable("VPTSHARP_CACHE")
        ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "vptsharp");

    /// <summary>Parses "hf:org/name[@revision]".</summary>
    public static (string Repo, string Revision) ParseId(string id)
    {
        var m = Regex.Match(id, @"^hf:([\w.\-]+/[\w.\-]+)(?:@([\w.\-/]+))?$");
        if (!m.Success) throw new ArgumentException($"bad hub id '{id}'; expected hf:org/name or hf:org/name@revision");
        return (m.Groups[1].Value, m.Groups[2].Success ? m.Groups[2].Value : "main");
    }

    public string LocalPath(string repo, string revision, string file) =>
        Path.Combine(CacheDir, "hub", repo.Replace("/", "--"), revision, file);

    /// <summary>Returns the cached file, downloading it first if needed; null when the server has no such file (404) and it is optional.</summary>
    public async Task<string?> GetFileAsync(string repo, string revision, string file, bool optional = false,
        string? expectedSha256 = null, IProgress<DownloadProgress>? progress = null, CancellationToken ct = default)
    {
        string final = LocalPath(repo, revision, file);
        if (File.Exists(final)) return final;
        Directory.CreateDirectory(Path.GetDirectoryName(final)!);
        string part = final + ".part";
        string url = $"{Endpoint}/{repo}/resolve/{revision}/{file}";

        long have = File.Exists(part) ? new FileInfo(part).Length : 0;
        using var req = new HttpRequestMessage(HttpMethod.Get, url);
        if (have > 0) req.Headers.Range = new RangeHeaderValue(have, null);
        using var resp = await http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead, ct);
        if (resp.StatusCode == HttpStatusCode.NotFound && optional) return null;
        if (resp.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable) { File.Delete(part); return await GetFileAsync(repo, revision, file, optional, expectedSha256, progress, ct); }
        if (!resp.IsSuccessStatusCode)
            throw new CheckpointException($"download of {url} failed: HTTP {(int)resp.StatusCode}; check the hub id, or set VPTSHARP_HF_ENDPOINT / download the file and pass its path");
        bool resumed = resp.StatusCode == HttpStatusCode.PartialContent;
        if (!resumed) have = 0;
        long? total = resp.Content.Headers.ContentLength is long cl ? cl + have : null;
        expectedSha256 ??= ShaFromEtag(resp);

        await using (var body = await resp.Content.ReadAsStreamAsync(ct))
        await using (var outFile = new FileStream(part, resumed ? FileMode.Append : FileMode.Create, FileAccess.Write))
        {
            var buf = new byte[1 << 16];
            long received = have;
            int n;
            while ((n = await body.ReadAsync(buf, ct)) > 0)
            {
                await outFile.WriteAsync(buf.AsMemory(0, n), ct);
                received += n;
                progress?.Report(new DownloadProgress(file, received, total));
            }
        }
        long size = new FileInfo(part).Length;
        if (total is long t && size != t)
            throw new CheckpointException($"download of {url} stopped at {size} of {t} bytes; run again to resume");
        if (expectedSha256 is not null)
        {
            string got = CheckpointReader.Sha256OfFile(part);
            if (!string.Equals(got, expectedSha256, StringComparison.OrdinalIgnoreCase))
            {
                File.Delete(part);
                throw new CheckpointException($"download of {url}: sha256 {got} does not match the expected {expectedSha256}; the partial file was removed, run again");
            }
        }
        File.Move(part, final, overwrite: true);
        return final;
    }

    /// <summary>The hub states an LFS file's sha256 as its (linked) ETag.</summary>
    static string? ShaFromEtag(HttpResponseMessage resp)
    {
        foreach (var name in new[] { "X-Linked-Etag", "ETag" })
            if (resp.Headers.TryGetValues(name, out var vals))
            {
                string v = vals.First().Trim('"').Replace("W/", "").Trim('"');
                if (Regex.IsMatch(v, "^[0-9a-fA-F]{64}$")) return v.ToLowerInvariant();
            }
        return null;
    }
}
