using System.IO.Compression;
using System.Text;
using VptSharp.Data;
using VptSharp.Data.Fgvc;
using VptSharp.Data.Vtab;
using VptSharp.Data.Vtab.Archives;
using VptSharp.IO;
using static VptSharp.Tests.VtabFixtures;

namespace VptSharp.Tests;

/// <summary>Release files whose fields lie (lengths past the end, shapes they do not hold, nesting without end, names
/// outside the release, gzip that inflates without bound): each ends in one named InvalidDataException, without hanging,
/// overflowing the stack or allocating what the file declares; a missing release is an InputFileException the CLI maps
/// to --from.</summary>
public class VtabHostileInputTests
{
    /// <summary>Runs <paramref name="read"/> on its own thread with a deadline (a regression would hang, not fail) and
    /// returns what it threw and how many bytes that thread allocated.</summary>
    static (Exception? Thrown, long Allocated) Attempt(Action read)
    {
        Exception? thrown = null;
        long allocated = 0;
        var thread = new Thread(() =>
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            try { read(); } catch (Exception e) { thrown = e; }
            allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        }) { IsBackground = true };
        thread.Start();
        Assert.True(thread.Join(TimeSpan.FromSeconds(30)), "the reader did not return within 30 s");
        return (thrown, allocated);
    }

    static InvalidDataException Refused(Action read, string expected)
    {
        var (thrown, allocated) = Attempt(read);
        var e = Assert.IsType<InvalidDataException>(thrown);
        Assert.Contains(expected, e.Message);
        Assert.True(allocated < 64 << 20, $"{allocated:N0} bytes allocated before the refusal");
        return e;
    }

    static byte[] TfRecordHeader(ulong length) =>
        [.. BitConverter.GetBytes(length), .. BitConverter.GetBytes(Crc32C.Masked(BitConverter.GetBytes(length)))];

    [Fact]
    public void TfRecordLengthsPastTheEndAreRefusedBeforeTheyAreFollowed()
    {
        string dir = TestUtil.TempDir(), looping = Path.Combine(dir, "loop.tfrecord"), huge = Path.Combine(dir, "huge.tfrecord");
        // 12 + (2^64 − 16) + 4 wraps to 0: the record counter used to seek back to the start for ever.
        File.WriteAllBytes(looping, TfRecordHeader(0xFFFF_FFFF_FFFF_FFF0));
        Refused(() => TfRecordReader.Count(looping), "truncated TFRecord at byte 0");
        // A 2 GB record declared in a 32-byte file is refused before its buffer is allocated.
        File.WriteAllBytes(huge, [.. TfRecordHeader(0x7FFF_FFF0), .. new byte[20]]);
        Refused(() => TfRecordReader.Read(huge).ToList(), "truncated TFRecord at byte 0");
    }

    /// <summary>A MAT matrix element of class <paramref name="cls"/> with <paramref name="dims"/>, an empty name and
    /// <paramref name="content"/> (already-framed elements).</summary>
    static byte[] MatMatrix(int cls, int[] dims, byte[] content)
    {
        static byte[] Element(int type, byte[] data) =>
            [.. BitConverter.GetBytes(type), .. BitConverter.GetBytes(data.Length), .. data, .. new byte[(8 - data.Length % 8) % 8]];
        return Element(14, [.. Element(6, [.. BitConverter.GetBytes(cls), 0, 0, 0, 0]), .. Element(5, dims.SelectMany(BitConverter.GetBytes).ToArray()),
            .. Element(1, []), .. content]);
    }

    static byte[] MatFileOf(byte[] matrix) =>
        [.. Encoding.ASCII.GetBytes("MATLAB 5.0 MAT-file, hostile".PadRight(116)), .. new byte[8], 0, 1, (byte)'I', (byte)'M', .. matrix];

    [Fact]
    public void MatFilesThatNestWithoutEndOrDeclareWhatTheyDoNotHoldAreRefused()
    {
        // Cells in cells, 200 deep: refused at the nesting limit instead of recursing as deep as the file says.
        var nested = MatMatrix(6, [0, 0], []);
        for (int i = 0; i < 200; i++) nested = MatMatrix(1, [1, 1], nested);
        Refused(() => MatFile.Read(MatFileOf(nested), "deep.mat"), "nested over");
        // A million cells declared in no bytes, and negative dimensions.
        Refused(() => MatFile.Read(MatFileOf(MatMatrix(1, [1000, 1000], [])), "cells.mat"), "declares 1,000,000 elements");
        Refused(() => MatFile.Read(MatFileOf(MatMatrix(1, [-1, 1], [])), "negative.mat"), "negative dimensions");
        // A struct of no fields over (2^31 − 1)² elements: nothing to read, so it returns at once instead of looping 2^62 times.
        byte[] noFields = [.. BitConverter.GetBytes(5), .. BitConverter.GetBytes(4), .. BitConverter.GetBytes(32), 0, 0, 0, 0,
            .. BitConverter.GetBytes(1), .. BitConverter.GetBytes(0)];
        var (thrown, _) = Attempt(() =>
        {
            var s = MatFile.Read(MatFileOf(MatMatrix(2, [int.MaxValue, int.MaxValue], noFields)), "struct.mat")[""];
            Assert.Empty(s.Fields);
        });
        Assert.Null(thrown);
    }

    [Fact]
    public void ArrayHeadersCannotAskForMemoryTheFileDoesNotHold()
    {
        string dir = TestUtil.TempDir();
        string npz = Path.Combine(dir, "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz");
        Npz(npz, ("imgs.npy", Npy("|u1", [1, 64, 64], new byte[4096])), ("latents_classes.npy", Npy("<i8", [300_000_000, 6], new byte[48])));
        Refused(() => ArchiveSources.Open(VtabTasks.Get("dsprites_loc"), dir), "latents_classes: declares 1,800,000,000 values");
        File.Delete(npz);
        Npz(npz, ("imgs.npy", Npy("|u1", [1, 64, 64], new byte[4096])), ("latents_classes.npy", Npy("<i8", [-1, 6], new byte[48])));
        Refused(() => ArchiveSources.Open(VtabTasks.Get("dsprites_loc"), dir), "is not a tuple of sizes");

        string norb = Path.Combine(dir, "norb");
        Directory.CreateDirectory(norb);
        foreach (var word in new[] { "training", "testing" })
        {
            File.WriteAllBytes(Path.Combine(norb, $"smallnorb-x-{word}-dat.mat"), NorbMatrix(0x1E3D4C55, [1, 2, 96, 96], new byte[2 * 9216]));
            File.WriteAllBytes(Path.Combine(norb, $"smallnorb-x-{word}-info.mat"), NorbMatrix(0x1E3D4C54, [-1, 4], new byte[16]));
        }
        Refused(() => ArchiveSources.Open(VtabTasks.Get("smallnorb_azi"), norb), "negative dimensions");
    }

    [Fact]
    public void NamesInListFilesCannotLeaveTheRelease()
    {
        string dir = TestUtil.TempDir(), root = Path.Combine(dir, "dtd"), outside = Path.Combine(dir, "secret.png");
        File.WriteAllBytes(outside, RgbPng(4, 1, 2, 3));
        Directory.CreateDirectory(Path.Combine(root, "images", "banded"));
        File.WriteAllBytes(Path.Combine(root, "images", "banded", "banded_0.jpg"), RgbPng(4, 9, 9, 9));
        Directory.CreateDirectory(Path.Combine(root, "labels"));
        File.WriteAllLines(Path.Combine(root, "labels", "train1.txt"), ["banded/banded_0.jpg"]);
        File.WriteAllLines(Path.Combine(root, "labels", "val1.txt"), ["banded/../../../secret.png"]); // resolves to the file above
        File.WriteAllLines(Path.Combine(root, "labels", "test1.txt"), ["banded/banded_0.jpg"]);
        var e = Refused(() => ArchiveSources.Open(VtabTasks.Get("dtd"), dir), "points outside");
        Assert.Contains("val1.txt", e.Message);
    }

    [Fact]
    public void MalformedFieldsEndInOneNamedLineFromTheCli()
    {
        string dir = TestUtil.TempDir(), scenes = Path.Combine(dir, "CLEVR_v1.0", "scenes");
        Directory.CreateDirectory(scenes);
        File.WriteAllText(Path.Combine(scenes, "CLEVR_train_scenes.json"), """{"info": {}}""");
        File.WriteAllText(Path.Combine(scenes, "CLEVR_val_scenes.json"), """{"info": {}}""");
        Refused(() => ArchiveSources.Open(VtabTasks.Get("clevr_count"), dir), "malformed (KeyNotFoundException");
        var r = TestUtil.RunCli("data", "vtab", "--task", "clevr_count", "--from", dir, "--source", "archive", "--out", Path.Combine(dir, "out"));
        Assert.Equal(1, r.ExitCode); // a one-line error, not the internal-error exit
        var err = r.Stderr.Trim();
        Assert.DoesNotContain('\n', err);
        Assert.Contains(dir, err);
    }

    [Fact]
    public void FgvcChecksTheReleaseBeforeWritingAnyMap()
    {
        string dir = TestUtil.TempDir(), root = Path.Combine(dir, "CUB_200_2011"), outDir = Path.Combine(dir, "fgvc");
        Directory.CreateDirectory(Path.Combine(root, "images", "001.A"));
        var images = new List<string>();
        for (int i = 1; i <= 4; i++)
        {
            File.WriteAllBytes(Path.Combine(root, "images", "001.A", $"{i}.jpg"), RgbPng(4, 5, 5, 5));
            images.Add($"{i} 001.A/{i}.jpg");
        }
        File.WriteAllLines(Path.Combine(root, "images.txt"), images);
        File.WriteAllLines(Path.Combine(root, "image_class_labels.txt"), Enumerable.Range(1, 4).Select(i => $"{i} 1"));
        File.WriteAllLines(Path.Combine(root, "train_test_split.txt"), Enumerable.Range(1, 4).Select(i => $"{i} {(i < 4 ? 1 : 0)}"));
        // An unusable val fraction used to be noticed after test.json was written, and the rerun then refused the folder.
        Assert.Throws<InvalidSettingException>(() => FgvcBuilder.Build("cub", dir, outDir, valFraction: 1));
        Assert.False(Directory.Exists(Path.Combine(outDir, "CUB_200_2011")));
        var built = FgvcBuilder.Build("cub", dir, outDir, valFraction: 0.34);
        Assert.Equal((2, 1, 1), (built.Train, built.Val, built.Test));
        // A name that climbs out of images/ is refused like the VTAB lists.
        File.WriteAllLines(Path.Combine(root, "images.txt"), [.. images.SkipLast(1), "4 ../../outside.jpg"]);
        Refused(() => FgvcBuilder.Build("cub", dir, Path.Combine(dir, "fgvc2"), 0.34), "points outside");
    }

    static byte[] Gzip(byte[] data)
    {
        using var m = new MemoryStream();
        using (var gz = new GZipStream(m, CompressionLevel.SmallestSize, leaveOpen: true)) gz.Write(data);
        return m.ToArray();
    }

    [Fact]
    public void GzipInputsInflateOnlyToTheirCeiling()
    {
        // 8 MB of zeros is an 8 KB gzip: the reader stops at its ceiling instead of following it.
        var bomb = Gzip(new byte[8 << 20]);
        Assert.True(bomb.Length < 64 << 10);
        var e = Assert.Throws<InvalidDataException>(() => BoundedInflate.ReadAll(new GZipStream(new MemoryStream(bomb), CompressionMode.Decompress), 1 << 20, "bomb.gz"));
        Assert.Contains("bomb.gz: inflates past 1,048,576 bytes", e.Message);
        using var sink = new MemoryStream();
        Assert.Throws<InvalidDataException>(() => BoundedInflate.CopyTo(new GZipStream(new MemoryStream(bomb), CompressionMode.Decompress), sink, 1 << 20, "bomb.gz"));
        Assert.True(sink.Length <= 1 << 20);
        Assert.Equal(8 << 20, BoundedInflate.ReadAll(new GZipStream(new MemoryStream(bomb), CompressionMode.Decompress), 8 << 20, "bomb.gz").Length);
    }

    [Fact]
    public void FashionMnistFilesShorterThanTheirHeaderAreNamed()
    {
        string dir = TestUtil.TempDir();
        File.WriteAllBytes(Path.Combine(dir, "t10k-images-idx3-ubyte.gz"), Gzip([0, 0, 8, 3, 0, 0])); // magic 2051, then cut
        File.WriteAllBytes(Path.Combine(dir, "t10k-labels-idx1-ubyte.gz"), Gzip([0, 0, 8, 1, 0, 0, 0, 0]));
        var e = Assert.Throws<InvalidDataException>(() => new FashionMnist("test", dir));
        Assert.Contains("t10k-images-idx3-ubyte.gz: not an IDX file (too short)", e.Message);
    }

    [Fact]
    public void TheCliNamesTheFlagForAMissingRelease()
    {
        string dir = TestUtil.TempDir(), missing = Path.Combine(dir, "nowhere");
        var r = TestUtil.RunCli("data", "vtab", "--task", "dtd", "--from", missing, "--source", "archive", "--out", Path.Combine(dir, "out"));
        Assert.Equal(1, r.ExitCode);
        Assert.Equal($"error: {missing}: no such folder; pass the folder the release was extracted to as --from", r.Stderr.Trim());
        // The library's own message states the fact only.
        var e = Assert.Throws<InputFileException>(() => ArchiveSources.Open(VtabTasks.Get("dtd"), missing));
        Assert.Equal(("release-folder", $"{missing}: no such folder"), (e.Setting, e.Message));
        var f = Assert.Throws<InputFileException>(() => FgvcBuilder.Build("cub", dir, Path.Combine(dir, "fgvc")));
        Assert.Contains("not the extracted CUB_200_2011 release", f.Message);
        Assert.DoesNotContain("--", f.Message);
    }
}
