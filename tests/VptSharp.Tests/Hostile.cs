using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using System.Text.Json.Nodes;
using VptSharp.Checkpoints;
using VptSharp.Tuning;
using static TorchSharp.torch;

namespace VptSharp.Tests;

/// <summary>Crafts hostile files (the adversarial corpus is made by the tests, not stored) and runs `vpt` measuring its peak RSS.</summary>
internal static class Hostile
{
    public sealed record Run(int ExitCode, string Stdout, string Stderr, long PeakRssKiB, bool TimedOut);

    /// <summary>The real `vpt` process; peak RSS is its VmHWM (kernel high-water mark), read until it exits.</summary>
    public static Run Vpt(TimeSpan timeout, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        // VPT_HOSTILE_CLI runs the corpus against another build (e.g. the one before the fixes, for a comparison).
        psi.ArgumentList.Add(Environment.GetEnvironmentVariable("VPT_HOSTILE_CLI") ?? TestUtil.CliDll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["VPTSHARP_CACHE"] = Path.Combine(Path.GetTempPath(), "vpt-tests-cache");
        using var p = Process.Start(psi)!;
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        long peak = 0;
        var clock = Stopwatch.StartNew();
        bool timedOut = false;
        while (!p.WaitForExit(20))
        {
            peak = Math.Max(peak, VmHwmKiB(p.Id));
            if (clock.Elapsed > timeout) { timedOut = true; p.Kill(true); p.WaitForExit(); break; }
        }
        return new Run(timedOut ? -1 : p.ExitCode, stdout.Result, stderr.Result, peak, timedOut);
    }

    public static long VmHwmKiB(int pid)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
                if (line.StartsWith("VmHWM:")) return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return 0;
    }

    static readonly uint[] CrcTable = Enumerable.Range(0, 256).Select(n =>
    {
        uint c = (uint)n;
        for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        return c;
    }).ToArray();

    static uint Crc(ReadOnlySpan<byte> data)
    {
        uint c = 0xFFFFFFFFu;
        foreach (var b in data) c = CrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
        return c ^ 0xFFFFFFFFu;
    }

    static void Chunk(Stream s, string type, ReadOnlySpan<byte> data)
    {
        Span<byte> len = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(len, data.Length);
        s.Write(len);
        var td = new byte[4 + data.Length];
        Encoding.ASCII.GetBytes(type).CopyTo(td, 0);
        data.CopyTo(td.AsSpan(4));
        s.Write(td);
        BinaryPrimitives.WriteUInt32BigEndian(len, Crc(td));
        s.Write(len);
    }

    /// <summary>An 8-bit RGB PNG whose header declares <paramref name="declaredW"/>×<paramref name="declaredH"/>; the
    /// IDAT holds <paramref name="rows"/> real rows of <paramref name="w"/> pixels from <paramref name="pixel"/>
    /// (fewer than declared: a header-only bomb), optionally cut to its first <paramref name="keepIdat"/> bytes.</summary>
    public static byte[] Png(int declaredW, int declaredH, int rows = -1, Func<int, int, byte>? pixel = null, int keepIdat = -1)
    {
        int w = declaredW;
        rows = rows < 0 ? declaredH : rows;
        using var ms = new MemoryStream();
        ms.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        var ihdr = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(ihdr, declaredW);
        BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), declaredH);
        ihdr[8] = 8; ihdr[9] = 2; // 8-bit RGB
        Chunk(ms, "IHDR", ihdr);
        using var idat = new MemoryStream();
        using (var z = new ZLibStream(idat, CompressionLevel.Fastest, leaveOpen: true))
        {
            var row = new byte[1 + 3L * w > int.MaxValue ? 1 : 1 + 3 * w];
            for (int y = 0; y < rows; y++)
            {
                if (pixel is not null) for (int x = 0; x < w; x++) row[1 + 3 * x] = row[2 + 3 * x] = row[3 + 3 * x] = pixel(x, y);
                z.Write(row);
            }
        }
        var data = idat.ToArray();
        if (keepIdat >= 0) data = data[..Math.Min(keepIdat, data.Length)];
        Chunk(ms, "IDAT", data);
        if (keepIdat < 0) Chunk(ms, "IEND", []);
        return ms.ToArray();
    }

    /// <summary>A safetensors file from a raw header string and a data section of <paramref name="dataBytes"/> zeros.</summary>
    public static byte[] Safetensors(string header, int dataBytes)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var o = new byte[8 + h.Length + dataBytes];
        BinaryPrimitives.WriteInt64LittleEndian(o, h.Length);
        h.CopyTo(o, 8);
        return o;
    }

    /// <summary>A copy of a task file whose metadata JSON was changed by <paramref name="edit"/>.</summary>
    public static string TaskWith(string task, string path, Action<JsonObject> edit)
    {
        var meta = JsonNode.Parse(SafetensorsFile.ReadMetadata(task)[TaskArtifact.MetadataKey])!.AsObject();
        edit(meta);
        return TaskWithRawMetadata(task, path, meta.ToJsonString());
    }

    public static string TaskWithRawMetadata(string task, string path, string metadata)
    {
        var tensors = SafetensorsFile.Load(task);
        SafetensorsFile.Save(path, tensors, new Dictionary<string, string> { [TaskArtifact.MetadataKey] = metadata });
        return path;
    }

    /// <summary>An .npz holding one .npy entry with the given header shape and <paramref name="dataBytes"/> zero bytes.</summary>
    public static void Npz(string path, string entry, string shape, long dataBytes, string descr = "<f4")
    {
        using var fs = File.Create(path);
        using var zip = new ZipArchive(fs, ZipArchiveMode.Create);
        using var s = zip.CreateEntry(entry, CompressionLevel.Fastest).Open();
        string header = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}";
        header += new string(' ', (64 - (10 + header.Length + 1) % 64) % 64) + "\n";
        s.Write([0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0]);
        s.Write(BitConverter.GetBytes((ushort)header.Length));
        s.Write(Encoding.ASCII.GetBytes(header));
        var zeros = new byte[1 << 20];
        for (long done = 0; done < dataBytes; done += zeros.Length) s.Write(zeros, 0, (int)Math.Min(zeros.Length, dataBytes - done));
    }

    public static string Sha(string path) => CheckpointReader.Sha256OfFile(path);
}
